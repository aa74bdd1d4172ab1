import assert from 'node:assert/strict'
import { after, before, describe, it } from 'node:test'
import { z } from 'zod'
import { isHearthError } from '../errors.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { signPayload } from '../identity/signed.ts'
import { createHost } from './host.ts'
import type { Host } from './host.ts'

const topic = '/hearth/test/offers/1'
const offer = z.object({ seq: z.number().int(), cpus: z.number().int().positive() })
type Offer = z.output<typeof offer>

async function waitFor(what: string, condition: () => boolean, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}

describe('signed gossip among four nodes in a line (A-B-C-D)', () => {
  const identities: NodeIdentity[] = Array.from({ length: 4 }, () => generateIdentity())
  const hosts: Host[] = []
  const received: Array<Array<{ offer: Offer; signer: string; from: string; at: number }>> = [[], [], [], []]

  before(async () => {
    for (const identity of identities) hosts.push(await createHost({ identity }))
    await Promise.all(hosts.map((host) => host.start()))
    hosts.forEach((host, index) => {
      host.subscribe(topic, offer, (payload, envelope, from) => {
        received[index]!.push({ offer: payload, signer: envelope.signer, from: from.toString(), at: performance.now() })
      }, { maxBytes: 4096 })
    })
    // A line, so that delivery to C and D needs forwarding by B and C.
    for (let i = 0; i < hosts.length - 1; i++) await hosts[i]!.dial(hosts[i + 1]!.multiaddrs()[0]!)
    await waitFor('subscriptions to propagate', () => hosts.every((host, i) => host.topicPeers(topic).length === (i === 0 || i === hosts.length - 1 ? 1 : 2)))
    // Meshes form on gossipsub's heartbeat; probe until a message crosses the whole line.
    let seq = -1
    while (received[3]!.length === 0) {
      await hosts[0]!.publish(topic, await signPayload(identities[0]!, { seq: seq--, cpus: 1 }))
      await new Promise((resolve) => setTimeout(resolve, 100))
    }
    await new Promise((resolve) => setTimeout(resolve, 100))
    received.forEach((list) => list.splice(0))
  })

  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()))
  })

  it('delivers a signed message to every other node, with its signer and origin', async (t) => {
    const deliveredBefore = hosts[3]!.metrics().topics[topic]?.delivered ?? 0
    const signed = await signPayload(identities[0]!, { seq: 1, cpus: 8 })
    const started = performance.now()
    const result = await hosts[0]!.publish(topic, signed)
    assert.equal(result.recipients, 1)
    await waitFor('delivery to B, C and D', () => [1, 2, 3].every((i) => received[i]!.length === 1))
    const arrivals = [1, 2, 3].map((i) => (received[i]![0]!.at - started).toFixed(1))
    t.diagnostic(`gossip delivery from A (publish call, signature check included) to B, C, D: ${arrivals.join(' / ')} ms`)
    for (const i of [1, 2, 3]) {
      const { at: _at, ...message } = received[i]![0]!
      assert.deepEqual(message, { offer: { seq: 1, cpus: 8 }, signer: identities[0]!.address, from: hosts[0]!.peerId.toString() })
    }
    assert.equal(received[0]!.length, 0)
    assert.equal(hosts[3]!.metrics().topics[topic]?.delivered, deliveredBefore + 1)
  })

  it('drops forged, malformed, oversized and off-schema messages at the first hop, and counts them', async () => {
    const [, , c, d] = hosts as [Host, Host, Host, Host]
    const pubsub = d.libp2p.services.pubsub
    const encode = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value))
    const mallory = generateIdentity()
    const genuine = await signPayload(identities[3]!, { seq: 10, cpus: 2 })
    const before = received.map((list) => list.length)

    await pubsub.publish(topic, encode({ ...genuine, payload: { seq: 10, cpus: 64 } })) // tampered
    await pubsub.publish(topic, encode({ ...genuine, signer: mallory.address })) // claims another signer
    await pubsub.publish(topic, encode(await signPayload(mallory, { seq: 11, cpus: 2 }))) // validly signed, by someone else
    await pubsub.publish(topic, encode(await signPayload(identities[3]!, { seq: 12, cpus: 'many' }))) // off-schema
    await pubsub.publish(topic, encode({ seq: 13, cpus: 2 })) // not an envelope
    await pubsub.publish(topic, new TextEncoder().encode('{"payload":')) // not JSON
    await pubsub.publish(topic, encode(await signPayload(identities[3]!, { seq: 14, cpus: 2, pad: 'x'.repeat(5000) }))) // too large

    const expected = { 'bad-signature': 2, 'signer-not-origin': 1, schema: 1, unsigned: 1, malformed: 1, 'too-large': 1 }
    await waitFor('C to drop all seven', () => Object.values(c.metrics().topics[topic]?.dropped ?? {}).reduce((sum, n) => sum + n, 0) >= 7)
    assert.deepEqual(c.metrics().topics[topic]?.dropped, expected)

    // The node keeps working and nothing bad went past C: a genuine message arrives, alone.
    await d.publish(topic, genuine)
    await waitFor('the genuine message', () => [0, 1, 2].every((i) => received[i]!.length === before[i]! + 1))
    for (const i of [0, 1, 2]) assert.deepEqual(received[i]!.at(-1)?.offer, { seq: 10, cpus: 2 })
    assert.deepEqual(hosts[1]!.metrics().topics[topic]?.dropped, {})
  })

  it('refuses to publish an envelope that does not verify, or is over the limit', async () => {
    const genuine = await signPayload(identities[0]!, { seq: 20, cpus: 1 })
    await assert.rejects(hosts[0]!.publish(topic, { ...genuine, payload: { seq: 21, cpus: 1 } }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_SIGNATURE_INVALID'))
    const big = await signPayload(identities[0]!, { seq: 22, cpus: 1, pad: 'x'.repeat(5000) })
    await assert.rejects(hosts[0]!.publish(topic, big, { maxBytes: 4096 }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE'))
    assert.throws(() => hosts[0]!.subscribe(topic, offer, () => {}), (error: unknown) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
  })
})

describe('signed gossip through a hub (a relay that every NATed node is connected to, and nobody else)', () => {
  const leafCount = 30
  const identities = Array.from({ length: leafCount + 2 }, () => generateIdentity())
  const hosts: Host[] = []
  const received = new Map<number, Set<number>>()

  before(async () => {
    for (const identity of identities) hosts.push(await createHost({ identity }))
    await Promise.all(hosts.map((host) => host.start()))
    hosts.forEach((host, index) => {
      received.set(index, new Set())
      host.subscribe(topic, offer, (payload) => void received.get(index)!.add(payload.seq), { maxBytes: 4096 })
    })
    const [hub, ...leaves] = hosts as [Host, ...Host[]]
    for (const leaf of leaves) await leaf.dial(hub.multiaddrs()[0]!)
    await waitFor('every leaf to see the hub subscribed', () => leaves.every((leaf) => leaf.topicPeers(topic).length === 1) && hub.topicPeers(topic).length === leaves.length)
    // The hub's mesh settles on its heartbeats (1 s each).
    await new Promise((resolve) => setTimeout(resolve, 3_000))
  })

  after(async () => {
    await Promise.all(hosts.map((host) => host.stop()))
  })

  it('reaches every leaf, in or out of the hub\'s mesh, by gossip alone', async () => {
    // The publisher is a leaf too; the hub's mesh holds only some of the others (gossipsub's D is 6 to 12): the rest
    // learn of each message from the hub's gossip (IHAVE) within the three heartbeats it keeps a message for.
    const publisherIndex = leafCount + 1
    const seqs = [1, 2, 3]
    for (const seq of seqs) {
      await hosts[publisherIndex]!.publish(topic, await signPayload(identities[publisherIndex]!, { seq, cpus: 1 }))
      await new Promise((resolve) => setTimeout(resolve, 200))
    }
    // Far past the hub's gossip window: a leaf that has not got a message by then never will by gossip.
    await new Promise((resolve) => setTimeout(resolve, 8_000))
    const missing = [...received].filter(([index]) => index !== publisherIndex).flatMap(([index, seen]) => seqs.filter((seq) => !seen.has(seq)).map((seq) => `node ${index} lacks ${seq}`))
    assert.deepEqual(missing, [])
  })
})
