/**
 * Protocol versions between nodes of different releases. Every Hearth protocol id ends in its major version
 * (`/hearth/exec/run-task/1`); a release that changes a message incompatibly serves the next major beside the old one
 * for a while, and libp2p's multistream-select settles on one both sides speak. When none is shared, the request is
 * refused before anything is sent or billed, and this module says which versions each side speaks, from what the peer
 * listed in identify, so the owner knows which node to upgrade.
 */
import type { Libp2p, PeerId } from '@libp2p/interface'
import { HearthError } from '../errors.ts'

/** The protocol's name and major version: `/hearth/exec/run-task/1` → `/hearth/exec/run-task`, 1. */
export function protocolMajor(id: string): { name: string; major: number } | undefined {
  const match = /^(\/hearth\/.+)\/(\d+)$/.exec(id)
  return match === null ? undefined : { name: match[1]!, major: Number(match[2]) }
}

/** True for libp2p's "the peer does not serve this protocol", wherever in a cause chain it sits. */
export function isUnsupportedProtocol(...errors: unknown[]): boolean {
  return errors.some((error) => {
    for (let e = error as Error | undefined, depth = 0; e !== undefined && e !== null && depth < 4; e = e.cause as Error | undefined, depth++) {
      if (e.name === 'UnsupportedProtocolError') return true
    }
    return false
  })
}

/**
 * HEARTH_ERR_NET_VERSION when the peer serves other majors of `id`'s protocol than `id`'s, else undefined (it serves
 * no version at all: another role, or not a Hearth node).
 */
export async function versionMismatch(libp2p: Pick<Libp2p, 'peerStore'>, peer: PeerId, id: string): Promise<HearthError | undefined> {
  const ours = protocolMajor(id)
  if (ours === undefined) return undefined
  const theirs: number[] = await libp2p.peerStore
    .get(peer)
    .then((known) => known.protocols.flatMap((protocol) => {
      const parsed = protocolMajor(protocol)
      return parsed?.name === ours.name ? [parsed.major] : []
    }))
    .catch((): number[] => [])
  if (theirs.length === 0 || theirs.includes(ours.major)) return undefined
  const newer = Math.max(...theirs) > ours.major
  return new HearthError('HEARTH_ERR_NET_VERSION', `Peer ${peer.toString()} speaks ${ours.name} version ${theirs.sort().join(', ')}; this node speaks version ${ours.major}`, {
    hint: newer ? 'the peer runs a newer Hearth: upgrade this node to work with it' : 'the peer runs an older Hearth that must be upgraded to work with this node',
    details: { protocol: ours.name, ours: ours.major, theirs },
  })
}
