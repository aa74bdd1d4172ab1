/**
 * The bytes a node holds for inbound frames, bounded node-wide, per remote IP and per remote peer, so that neither one
 * peer nor a crowd of fresh peer ids (they cost nothing) can make the node buffer more than its owner can spare.
 *
 * A frame's declared length (its length prefix) is reserved before its body is read and released once the frame has
 * been handled or abandoned. Frames come in two shares. The open share is for frames nobody vouched for: it may fill
 * only `openMaxBytes` of the node's `maxBytes`, and each IP and each peer only a part of that. The admitted share is for
 * frames a protocol's admission check let through (their sender holds a funded agreement, say): it draws from the whole
 * node budget, so unadmitted traffic can never take the room admitted traffic needs, even when both come from one IP
 * (a NAT, or 127.0.0.1 in tests).
 */
import { HearthError } from '../errors.ts'

const KiB = 1024
const MiB = 1024 * KiB

export interface InboundLimits {
  /** Bytes of inbound frames the node holds at once, both shares together. */
  maxBytes: number
  /** The part of `maxBytes` that frames nobody admitted may hold; the rest is kept for admitted frames. */
  openMaxBytes: number
  /** Unadmitted bytes from one remote IP (for IPv6: one /64). */
  openPerIpMaxBytes: number
  /** Unadmitted bytes from one remote peer. */
  openPerPeerMaxBytes: number
  /** Admitted bytes from one remote IP. */
  admittedPerIpMaxBytes: number
  /** Admitted bytes from one remote peer: at least the largest frame an admitted peer must be able to send. */
  admittedPerPeerMaxBytes: number
  /** Frames up to this size need no admission (while the open share has room for them). */
  smallFrameBytes: number
  /** Time every frame gets on top of its transfer time, and the longest wait for a request that is due. */
  frameAllowanceMs: number
  /** The slowest transfer a frame may take: a frame of n bytes must arrive within allowance + n / rate. */
  minBytesPerSecond: number
}

/**
 * Sized for a home machine. 256 MiB in all; anonymous traffic may hold a quarter of it (64 MiB), one IP half of that
 * and one peer id a quarter, so a flood of peer ids from one address holds at most 32 MiB. Admitted peers keep at least
 * 192 MiB: one may hold 128 MiB (a 96 MiB run-task frame and some small ones), one IP 192 MiB. Frames of 64 KiB or
 * less (negotiation, vouchers, small tasks) need no admission. A frame gets 10 s plus its size at 64 KiB/s (0.5 Mbit/s,
 * a slow home uplink): a 96 MiB frame may take 26 minutes, a 1 KiB one 10 s; a peer that sends slower cannot be told
 * apart from one holding memory on purpose.
 */
export const defaultInboundLimits: Readonly<InboundLimits> = Object.freeze({
  maxBytes: 256 * MiB,
  openMaxBytes: 64 * MiB,
  openPerIpMaxBytes: 32 * MiB,
  openPerPeerMaxBytes: 16 * MiB,
  admittedPerIpMaxBytes: 192 * MiB,
  admittedPerPeerMaxBytes: 128 * MiB,
  smallFrameBytes: 64 * KiB,
  frameAllowanceMs: 10_000,
  minBytesPerSecond: 64 * KiB,
})

export type InboundShare = 'open' | 'admitted'

/** Which bound refused a frame. */
export type InboundScope = 'node' | 'open' | 'ip' | 'peer'

export interface InboundClaim {
  /** The remote peer (its PeerId as a string). */
  peer: string
  /** The remote IP key (see remoteIpKey). */
  ip: string
  bytes: number
  share: InboundShare
}

export interface InboundReservation {
  readonly bytes: number
  readonly share: InboundShare
  /** Gives the bytes back; later calls do nothing. */
  release(): void
}

export interface InboundStats {
  /** Bytes held now for inbound frames (both shares). */
  bufferedBytes: number
  /** The most ever held at once. */
  peakBufferedBytes: number
  openBytes: number
  admittedBytes: number
  /** Frames held now. */
  frames: number
  /** Frames refused because they did not fit, by the bound that refused them. */
  refused: Record<InboundScope, number>
  /** Frames a protocol's admission check refused (their bodies were never read). */
  notAdmitted: number
  /** Frames abandoned because they did not arrive in time. */
  frameTimeouts: number
  limits: InboundLimits
}

export interface InboundBudget {
  readonly limits: Readonly<InboundLimits>
  /**
   * Holds `bytes` for one frame, or throws without holding anything: HEARTH_ERR_NET_BUSY when the frame would fit once
   * others are released, HEARTH_ERR_NET_MESSAGE_TOO_LARGE when it is larger than the bound itself.
   */
  reserve(claim: InboundClaim): InboundReservation
  /** Counts a frame refused by admission. */
  countNotAdmitted(): void
  /** Counts a frame abandoned on its deadline. */
  countFrameTimeout(): void
  snapshot(): InboundStats
}

export function resolveInboundLimits(overrides: Partial<InboundLimits> = {}): InboundLimits {
  const limits = { ...defaultInboundLimits, ...overrides }
  for (const [name, value] of Object.entries(limits)) {
    if (!Number.isSafeInteger(value) || value <= 0) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `inbound.${name} must be a positive integer, got ${String(value)}`, { details: { [name]: value } })
    }
  }
  const order: [keyof InboundLimits, keyof InboundLimits][] = [
    ['openMaxBytes', 'maxBytes'],
    ['openPerIpMaxBytes', 'openMaxBytes'],
    ['openPerPeerMaxBytes', 'openPerIpMaxBytes'],
    ['smallFrameBytes', 'openPerPeerMaxBytes'],
    ['admittedPerIpMaxBytes', 'maxBytes'],
    ['admittedPerPeerMaxBytes', 'admittedPerIpMaxBytes'],
  ]
  for (const [smaller, larger] of order) {
    if (limits[smaller] > limits[larger]) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `inbound.${smaller} (${limits[smaller]}) is larger than inbound.${larger} (${limits[larger]})`, {
        hint: `keep ${smaller} at most ${larger}`,
        details: { [smaller]: limits[smaller], [larger]: limits[larger] },
      })
    }
  }
  return limits
}

export function createInboundBudget(overrides: Partial<InboundLimits> = {}): InboundBudget {
  const limits = Object.freeze(resolveInboundLimits(overrides))
  const held: Record<InboundShare, { total: number; ip: Map<string, number>; peer: Map<string, number> }> = {
    open: { total: 0, ip: new Map(), peer: new Map() },
    admitted: { total: 0, ip: new Map(), peer: new Map() },
  }
  let peak = 0
  let frames = 0
  let notAdmitted = 0
  let frameTimeouts = 0
  const refused: Record<InboundScope, number> = { node: 0, open: 0, ip: 0, peer: 0 }

  const add = (map: Map<string, number>, key: string, delta: number): void => {
    const value = (map.get(key) ?? 0) + delta
    if (value === 0) map.delete(key)
    else map.set(key, value)
  }

  const refuse = (claim: InboundClaim, scope: InboundScope, heldBytes: number, limitBytes: number): never => {
    refused[scope]++
    const whose = {
      node: 'for inbound frames',
      open: 'for inbound frames no protocol admitted',
      ip: `for ${claim.share} frames from ${claim.ip}`,
      peer: `for ${claim.share} frames from one peer`,
    }[scope]
    const details = { scope, share: claim.share, bytes: claim.bytes, heldBytes, limitBytes }
    if (claim.bytes > limitBytes) {
      throw new HearthError('HEARTH_ERR_NET_MESSAGE_TOO_LARGE', `A frame of ${claim.bytes} bytes is more than the ${limitBytes} bytes this node keeps ${whose}`, {
        hint: claim.share === 'open' ? 'send smaller messages, or become a peer the protocol admits (for tasks: hold a funded agreement)' : 'send smaller messages',
        details,
      })
    }
    throw new HearthError('HEARTH_ERR_NET_BUSY', `This node holds ${heldBytes} of the ${limitBytes} bytes it keeps ${whose}; a frame of ${claim.bytes} bytes does not fit now`, {
      hint: 'retry later: the node is receiving more than it can hold at once',
      details,
    })
  }

  return {
    limits,
    reserve(claim) {
      if (!Number.isSafeInteger(claim.bytes) || claim.bytes < 0) throw new RangeError(`cannot reserve ${claim.bytes} bytes`)
      const share = held[claim.share]
      const total = held.open.total + held.admitted.total
      const [ipLimit, peerLimit] = claim.share === 'open' ? [limits.openPerIpMaxBytes, limits.openPerPeerMaxBytes] : [limits.admittedPerIpMaxBytes, limits.admittedPerPeerMaxBytes]
      const bounds: [InboundScope, number, number][] = [
        ['node', total, limits.maxBytes],
        ...(claim.share === 'open' ? [['open', share.total, limits.openMaxBytes] as [InboundScope, number, number]] : []),
        ['ip', share.ip.get(claim.ip) ?? 0, ipLimit],
        ['peer', share.peer.get(claim.peer) ?? 0, peerLimit],
      ]
      // A frame larger than a bound itself never fits: say so rather than "retry later".
      const never = bounds.find(([, , limit]) => claim.bytes > limit)
      if (never !== undefined) refuse(claim, ...never)
      const full = bounds.find(([, heldBytes, limit]) => heldBytes + claim.bytes > limit)
      if (full !== undefined) refuse(claim, ...full)

      share.total += claim.bytes
      add(share.ip, claim.ip, claim.bytes)
      add(share.peer, claim.peer, claim.bytes)
      frames++
      peak = Math.max(peak, held.open.total + held.admitted.total)
      let released = false
      return {
        bytes: claim.bytes,
        share: claim.share,
        release() {
          if (released) return
          released = true
          share.total -= claim.bytes
          add(share.ip, claim.ip, -claim.bytes)
          add(share.peer, claim.peer, -claim.bytes)
          frames--
        },
      }
    },
    countNotAdmitted() {
      notAdmitted++
    },
    countFrameTimeout() {
      frameTimeouts++
    },
    snapshot: () => ({
      bufferedBytes: held.open.total + held.admitted.total,
      peakBufferedBytes: peak,
      openBytes: held.open.total,
      admittedBytes: held.admitted.total,
      frames,
      refused: { ...refused },
      notAdmitted,
      frameTimeouts,
      limits: { ...limits },
    }),
  }
}

/**
 * The key a connection's remote address is budgeted under: its IPv4 address, the /64 of its IPv6 address (one host
 * gets a whole /64), or 'unknown'. A relayed connection counts under the relay's address.
 */
export function remoteIpKey(address: { getComponents(): { name: string; value?: string }[] } | undefined): string {
  for (const component of address?.getComponents() ?? []) {
    if (component.value === undefined) continue
    if (component.name === 'ip4') return component.value
    if (component.name === 'ip6') return ipv6Prefix(component.value)
  }
  return 'unknown'
}

function ipv6Prefix(address: string): string {
  const plain = address.split('%')[0]!.toLowerCase()
  // An IPv4-mapped address is that IPv4 address.
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(plain)
  if (mapped !== null) return mapped[1]!
  const mappedHex = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(plain)
  if (mappedHex !== null) {
    const [high, low] = [parseInt(mappedHex[1]!, 16), parseInt(mappedHex[2]!, 16)]
    return [high >> 8, high & 0xff, low >> 8, low & 0xff].join('.')
  }
  const [head = '', tail] = plain.split('::')
  const left = head === '' ? [] : head.split(':')
  const right = tail === undefined || tail === '' ? [] : tail.split(':')
  const groups = tail === undefined ? left : [...left, ...new Array<string>(Math.max(0, 8 - left.length - right.length)).fill('0'), ...right]
  return `${groups.slice(0, 4).map((group) => group.replace(/^0+(?=.)/, '')).join(':')}::/64`
}
