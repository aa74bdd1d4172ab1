/**
 * Attacks on a node's memory over real libp2p on 127.0.0.1, against every kind of served protocol: frames that
 * announce a large size and trickle in, a crowd of fresh peer ids (free to make) on one IP opening many streams with
 * large frames, and frames from senders the protocol does not admit. The node must keep what it holds for inbound
 * frames under its caps, give bytes back, and keep serving the peer it admits.
 */
import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { defineBlobProtocol, serveBlobProtocol } from './blob-protocol.ts'
import { createHost } from './host.ts'
import type { Host, HostInit } from './host.ts'
import type { InboundStats } from './inbound-budget.ts'
import type { AdmitContext } from './inbound-guard.ts'
import { jsonFrames } from './json-frames.ts'
import { defineProtocol } from './protocol.ts'
import { defineStreamProtocol, serveStreamProtocol } from './stream-protocol.ts'

const KiB = 1024
const MiB = 1024 * KiB
const hour = 3_600_000

// Every protocol here allows an hour for its exchange: only the frame deadline may end a trickled frame early.
const upload = z.object({ data: z.string() })
const size = z.object({ bytes: z.number() })
const openUpload = defineProtocol({ id: '/hearth/test/open-upload/1', request: upload, response: size, maxRequestBytes: 16 * MiB, maxResponseBytes: 1024, timeoutMs: hour })
const paidUpload = defineProtocol({ ...openUpload, id: '/hearth/test/paid-upload/1' })
const streamUpload = defineStreamProtocol({
  id: '/hearth/test/stream-upload/1', request: upload, event: z.object({}), result: size,
  maxRequestBytes: 16 * MiB, maxEventBytes: 1024, maxResultBytes: 1024, maxTotalBytes: 1 * MiB, maxEvents: 10, timeoutMs: hour, idleTimeoutMs: hour,
})
const blobUpload = defineBlobProtocol({ id: '/hearth/test/blob-upload/1', request: upload, header: size, maxRequestBytes: 16 * MiB, maxHeaderBytes: 1024, maxBodyBytes: 1024, timeoutMs: hour })

function varint(length: number): number[] {
  const bytes: number[] = []
  for (let rest = length; ; rest = Math.floor(rest / 128)) {
    if (rest < 128) return [...bytes, rest]
    bytes.push((rest % 128) | 128)
  }
}

async function waitFor(what: string, condition: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

interface RawUpload {
  stream: Stream
  /** The node's answer frame, or `{ reset }` when the stream ended without one. */
  answer: Promise<{ ok?: boolean; error?: { code: string; message: string }; reset?: string }>
  answered: boolean
}

/**
 * Opens a stream as a hostile peer would: a length prefix announcing `declaredBytes`, then only `sentBytes` of the
 * body, and the stream left open.
 */
async function rawUpload(from: Host, to: Host, protocolId: string, declaredBytes: number, sentBytes: number): Promise<RawUpload> {
  // A generous bound of its own: a crowd of streams opening at once on a busy machine is slow to negotiate.
  const stream = await from.libp2p.dialProtocol(multiaddr(to.multiaddrs()[0]!), protocolId, { signal: AbortSignal.timeout(300_000) })
  const upload: RawUpload = { stream, answer: Promise.resolve({}), answered: false }
  upload.answer = jsonFrames(stream, 16 * KiB).read().then(
    (frame) => frame.value as { ok: boolean; error: { code: string; message: string } },
    (error: unknown) => ({ reset: String(error) }),
  ).finally(() => {
    upload.answered = true
  })
  stream.send(Uint8Array.from([...varint(declaredBytes), ...new Uint8Array(sentBytes).fill(0x20)]))
  return upload
}

describe('inbound frames under attack over real libp2p', () => {
  const hosts: Host[] = []
  const started = async (init: Omit<HostInit, 'identity'> = {}): Promise<Host> => {
    const host = await createHost({ identity: generateIdentity(), ...init })
    hosts.push(host)
    await host.start()
    return host
  }
  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()))
  })

  /** Serves the four test protocols on `node`; `admits` decides who may send large frames on paid-upload. */
  const serveAll = async (node: Host, admits: (context: AdmitContext) => boolean): Promise<{ handled: string[]; admissions: AdmitContext[] }> => {
    const handled: string[] = []
    const admissions: AdmitContext[] = []
    const admit = (context: AdmitContext): void => {
      admissions.push(context)
      if (!admits(context)) throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', `${context.remoteAddress} holds no funded agreement here`)
    }
    await node.handle(openUpload, ({ data }) => {
      handled.push(openUpload.id)
      return { bytes: data.length }
    })
    await node.handle(paidUpload, ({ data }) => {
      handled.push(paidUpload.id)
      return { bytes: data.length }
    }, { admit })
    await serveStreamProtocol({ libp2p: node.libp2p, identity: generateIdentity() }, streamUpload, async ({ data }) => {
      handled.push(streamUpload.id)
      return { bytes: data.length }
    })
    await serveBlobProtocol({ libp2p: node.libp2p }, blobUpload, ({ data }) => {
      handled.push(blobUpload.id)
      return { header: { bytes: data.length }, body: new Uint8Array(0) }
    })
    return { handled, admissions }
  }

  describe('a frame that trickles in', () => {
    let node: Host
    let attacker: Host
    let served: { handled: string[] }
    before(async () => {
      // A short allowance and a high minimum rate, so that the deadline of a 2 MiB frame comes within seconds.
      node = await started({ inbound: { frameAllowanceMs: 300, minBytesPerSecond: 1 * MiB } })
      attacker = await started()
      served = await serveAll(node, () => true)
      await attacker.dial(node.multiaddrs()[0]!)
    })

    it('is abandoned on its own deadline, however long the protocol allows, on every kind of protocol, and its bytes come back', async () => {
      for (const id of [openUpload.id, streamUpload.id, blobUpload.id, paidUpload.id]) {
        const upload = await rawUpload(attacker, node, id, 2 * MiB, 1 * KiB)
        // 1 KiB every 20 ms: 50 KiB/s, far below the 1 MiB/s this node asks of every frame.
        const trickle = setInterval(() => {
          if (upload.stream.writeStatus === 'writable') upload.stream.send(new Uint8Array(KiB).fill(0x20))
        }, 20)
        const answer = await upload.answer
        clearInterval(trickle)
        assert.equal(answer.error?.code, 'HEARTH_ERR_NET_TIMEOUT', `${id}: ${JSON.stringify(answer)}`)
        assert.match(answer.error!.message, /2097152 bytes did not arrive within/)
        // The frame was held while it trickled (its declared size reserved), and given back when abandoned.
        assert.ok(node.metrics().inbound.peakBufferedBytes >= 2 * MiB)
        await waitFor('the frame to be released', () => node.metrics().inbound.bufferedBytes === 0)
        // The stream was reset after the answer: nothing of it stays open on the node.
        await waitFor('the stream to close', () => upload.stream.status !== 'open')
      }
      const metrics = node.metrics()
      assert.equal(metrics.inbound.frameTimeouts, 4)
      for (const id of [openUpload.id, streamUpload.id, blobUpload.id, paidUpload.id]) assert.equal(metrics.protocols[id]?.rejected['too-slow'], 1, id)
      assert.deepEqual(served.handled, [])
    })

    it('and a request that never starts is abandoned on the allowance, while one sent at a fair pace is served', async () => {
      const stream = await attacker.libp2p.dialProtocol(multiaddr(node.multiaddrs()[0]!), openUpload.id)
      const answer = await jsonFrames(stream, 16 * KiB).read({ signal: AbortSignal.timeout(120_000) })
      assert.equal((answer.value as { error: { code: string } }).error.code, 'HEARTH_ERR_NET_TIMEOUT')
      assert.deepEqual(await attacker.request(node.peerId, openUpload, { data: 'z'.repeat(3 * MiB) }), { bytes: 3 * MiB })
    })
  })

  describe('twenty fresh peer ids on one IP', () => {
    // Small caps, so that the attack fills them with little memory: 6 MiB for all unadmitted frames from one IP.
    const limits = {
      maxBytes: 32 * MiB, openMaxBytes: 8 * MiB, openPerIpMaxBytes: 6 * MiB, openPerPeerMaxBytes: 2 * MiB,
      admittedPerIpMaxBytes: 24 * MiB, admittedPerPeerMaxBytes: 16 * MiB, frameAllowanceMs: 120_000,
    }
    let node: Host
    let honest: Host
    let served: { handled: string[]; admissions: AdmitContext[] }
    before(async () => {
      node = await started({ inbound: limits })
      honest = await started()
      served = await serveAll(node, (context) => context.remoteAddress === honest.address)
      await honest.dial(node.multiaddrs()[0]!)
    })

    it('hold no more than the open share, are refused past it on every kind of protocol, and never starve an admitted peer', async () => {
      const attackers: Host[] = []
      for (let i = 0; i < 20; i++) {
        const attacker = await started()
        await attacker.dial(node.multiaddrs()[0]!)
        attackers.push(attacker)
      }
      const samples: InboundStats[] = []
      const sampler = setInterval(() => samples.push(node.metrics().inbound), 5)
      try {
        // Each opens 10 streams announcing 1 MiB without admission (6 request/response, 2 streaming, 2 blob) and 2
        // announcing 12 MiB on the protocol that admits only paying peers; each sends 1 KiB and holds on.
        const uploads = (await Promise.all(attackers.map((attacker) => Promise.all([
          ...Array.from({ length: 6 }, () => rawUpload(attacker, node, openUpload.id, 1 * MiB, KiB)),
          ...Array.from({ length: 2 }, () => rawUpload(attacker, node, streamUpload.id, 1 * MiB, KiB)),
          ...Array.from({ length: 2 }, () => rawUpload(attacker, node, blobUpload.id, 1 * MiB, KiB)),
          ...Array.from({ length: 2 }, () => rawUpload(attacker, node, paidUpload.id, 12 * MiB, KiB)),
        ])))).flat()
        // Every stream is either refused or holding its reservation.
        await waitFor('every stream to be refused or held', () => uploads.filter((u) => u.answered).length + node.metrics().inbound.frames === uploads.length)
        const held = node.metrics().inbound
        // No stream ended without an answer (a connection dropped would give back what it held).
        const unanswered = (await Promise.all(uploads.filter((u) => u.answered).map((u) => u.answer))).filter((a) => a.reset !== undefined)
        assert.deepEqual(unanswered, [])
        // The crowd filled its IP's part of the open share, and no more.
        assert.equal(held.openBytes, limits.openPerIpMaxBytes)
        assert.equal(held.frames, 6)
        assert.equal(held.admittedBytes, 0)

        // While the crowd holds the IP's open share, the admitted peer (same IP) sends 10 MiB, and a small frame.
        assert.deepEqual(await honest.request(node.peerId, paidUpload, { data: 'h'.repeat(10 * MiB) }), { bytes: 10 * MiB })
        assert.deepEqual(await honest.request(node.peerId, paidUpload, { data: 'small' }), { bytes: 5 })
        // The small one needed no admission, but found the open share full: admission let it use the admitted share.
        assert.ok(served.admissions.some((a) => a.remoteAddress === honest.address && a.declaredBytes < 1024))
        // A protocol that admits nobody has only the open share: it is full, and says so with a code to retry on.
        await assert.rejects(honest.request(node.peerId, openUpload, { data: 'small' }), (error: unknown) =>
          isHearthError(error, 'HEARTH_ERR_NET_BUSY') && error.details?.remoteCode === 'HEARTH_ERR_NET_BUSY' && error.hint !== undefined)

        const answers = await Promise.all(uploads.filter((u) => u.answered).map((u) => u.answer))
        const codes = (id: string): string[] => answers.filter((_, i) => uploads.filter((u) => u.answered)[i]!.stream.protocol === id).map((a) => a.error?.code ?? `none: ${JSON.stringify(a)}`)
        for (const id of [openUpload.id, streamUpload.id, blobUpload.id]) {
          const refused = codes(id)
          assert.ok(refused.length > 0 && refused.every((code) => code === 'HEARTH_ERR_NET_BUSY'), `${id}: ${refused.join(', ')}`)
        }
        // The large frames were refused by admission alone, unread: 40 of them, with the admission check's own error.
        const paid = codes(paidUpload.id)
        assert.equal(paid.length, 40)
        assert.ok(paid.every((code) => code === 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN'), paid.join(', '))
        assert.ok(served.admissions.filter((a) => a.remoteAddress !== honest.address).every((a) => a.declaredBytes === 12 * MiB))
        const metrics = node.metrics()
        assert.equal(metrics.inbound.notAdmitted, 40)
        assert.equal(metrics.protocols[paidUpload.id]?.rejected['not-admitted'], 40)
        assert.ok((metrics.protocols[openUpload.id]?.rejected.busy ?? 0) >= 100)
        assert.deepEqual(served.handled.filter((id) => id !== paidUpload.id), [])
      } finally {
        clearInterval(sampler)
      }
      // Sampled all along: never more than the caps.
      assert.ok(samples.length > 0)
      assert.ok(Math.max(...samples.map((s) => s.bufferedBytes)) <= limits.maxBytes)
      assert.ok(Math.max(...samples.map((s) => s.openBytes)) <= limits.openPerIpMaxBytes)
      assert.ok(node.metrics().inbound.peakBufferedBytes <= limits.maxBytes)

      // The crowd leaves: every byte it held comes back.
      await Promise.all(attackers.map((attacker) => attacker.stop()))
      await waitFor('the crowd\'s frames to be released', () => node.metrics().inbound.bufferedBytes === 0)
    })

    it('never reads a frame that admission refuses', async () => {
      const stranger = await started()
      const before = node.metrics()
      // 12 MiB announced, 10 bytes sent, the stream kept open: an answer can only come from the admission check.
      const upload = await rawUpload(stranger, node, paidUpload.id, 12 * MiB, 10)
      const answer = await upload.answer
      assert.equal(answer.error?.code, 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN')
      assert.match(answer.error!.message, /holds no funded agreement/)
      const admission = served.admissions.at(-1)!
      assert.equal(admission.remoteAddress, stranger.address)
      assert.equal(admission.peerId.toString(), stranger.peerId.toString())
      assert.equal(admission.declaredBytes, 12 * MiB)
      // And the real requester path, body sent in full: refused all the same, the handler never called.
      const handledBefore = served.handled.length
      await assert.rejects(stranger.request(node.peerId, paidUpload, { data: 's'.repeat(200 * KiB) }), (error: unknown) =>
        isHearthError(error, 'HEARTH_ERR_NET_REMOTE') && error.details?.remoteCode === 'HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN')
      assert.equal(served.handled.length, handledBefore)
      const after = node.metrics()
      assert.equal(after.inbound.notAdmitted, before.inbound.notAdmitted + 2)
      assert.equal(after.inbound.admittedBytes, 0)
      assert.equal(after.inbound.bufferedBytes, 0)
    })
  })
})
