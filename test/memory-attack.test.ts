/**
 * The memory attack on a provider, end to end on the devnet: twenty anonymous peer ids (fresh keys cost nothing), all
 * on the provider's IP like the honest requestor, hammer its run-task protocol with frames that announce up to 96 MiB
 * and then trickle, while an honest job runs there under a funded agreement. The job must finish with the right
 * picture, and the provider must never hold more for inbound frames than its caps.
 *
 * This needs the provider agent to pass its admission check for run-task (an approved agreement with a funded escrow)
 * to `host.handle(runTaskProtocol, …, { admit })`: without it, no large frame is refused by admission, which the last
 * assertions check.
 */
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import { multiaddr } from '@multiformats/multiaddr'
import type { Stream } from '@libp2p/interface'
import { parseEther } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import { runTaskProtocol } from '../src/exec/task-protocols.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { loadBuiltinWorkload } from '../src/exec/workloads.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { assembleRender, renderJob } from '../src/jobs/render-job.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { createHost, type Host } from '../src/net/host.ts'
import type { InboundStats } from '../src/net/inbound-budget.ts'
import { jsonFrames } from '../src/net/json-frames.ts'

const KiB = 1024
const MiB = 1024 * KiB
/** What each attacker announces, largest first, so that together they pack whatever room the budget leaves. */
const declaredSizes = [96 * MiB, 15 * MiB, 4 * MiB, 1 * MiB, 64 * KiB, 16 * KiB, 4 * KiB, 1 * KiB, 256]

let wasm: Uint8Array
before(async () => {
  wasm = await loadBuiltinWorkload('render')
})

function varint(length: number): number[] {
  const bytes: number[] = []
  for (let rest = length; ; rest = Math.floor(rest / 128)) {
    if (rest < 128) return [...bytes, rest]
    bytes.push((rest % 128) | 128)
  }
}

/**
 * One attacker: keeps a stream open for each size, each announcing a run-task frame of that size, sending a few bytes
 * at once and one more every second; a stream the provider refuses or abandons is opened again half a second later.
 */
function hammer(attacker: Host, target: string, signal: AbortSignal, answers: Map<string, number>): Promise<void> {
  const open = new Set<Stream>()
  const trickle = setInterval(() => {
    for (const stream of open) {
      try {
        if (stream.writeStatus === 'writable') stream.send(Uint8Array.of(0x20))
      } catch {
        // closed between the check and the write: the reader below sees it
      }
    }
  }, 1000)
  const keep = async (declaredBytes: number): Promise<void> => {
    while (!signal.aborted) {
      let stream: Stream
      try {
        stream = await attacker.libp2p.dialProtocol(multiaddr(target), runTaskProtocol.id, { signal })
      } catch {
        if (signal.aborted) return
        await new Promise((resolve) => setTimeout(resolve, 500))
        continue
      }
      open.add(stream)
      const onAbort = (): void => stream.abort(new Error('attack over'))
      signal.addEventListener('abort', onAbort, { once: true })
      try {
        stream.send(Uint8Array.from([...varint(declaredBytes), ...new Uint8Array(16).fill(0x7b)]))
      } catch {
        // the provider closed the stream already (refused unread): read its answer below, or count the reset
      }
      const answer = await jsonFrames(stream, 16 * KiB).read().then(
        (frame) => (frame.value as { error?: { code: string } }).error?.code ?? 'answered',
        () => 'reset',
      )
      answers.set(answer, (answers.get(answer) ?? 0) + 1)
      open.delete(stream)
      signal.removeEventListener('abort', onAbort)
      if (stream.status === 'open') stream.abort(new Error('refused'))
      await new Promise((resolve) => setTimeout(resolve, 500))
    }
  }
  return Promise.all(declaredSizes.map(keep)).then(() => clearInterval(trickle))
}

test('twenty anonymous peer ids trickling huge run-task frames cannot exhaust a provider, and an honest job on it completes', async () => {
  const devnet = await startDevnet({ providers: 1 })
  after(() => devnet.stop())
  const provider = devnet.providers[0]!
  const target = provider.host.multiaddrs()[0]!
  const limits = provider.host.metrics().inbound.limits
  const { spec, tiles } = renderJob({ width: 48, height: 36, tiles: 8, wasm, providers: 1, maxPricePerTaskWei: parseEther('1') })

  // The honest requestor agrees and funds its escrow first (negotiation itself is open to anyone, and admitted by no one).
  const session = await devnet.requestor.agent.openJob(spec)

  const attackers: Host[] = []
  after(() => Promise.all(attackers.map((attacker) => attacker.stop())))
  for (let i = 0; i < 20; i++) {
    const attacker = await createHost({ identity: generateIdentity() })
    await attacker.start()
    await attacker.dial(target)
    attackers.push(attacker)
  }
  const samples: InboundStats[] = []
  const sampler = setInterval(() => samples.push(provider.host.metrics().inbound), 10)
  const stop = new AbortController()
  const answers = new Map<string, number>()
  const attack = Promise.all(attackers.map((attacker) => hammer(attacker, target, stop.signal, answers)))
  let batch: Awaited<ReturnType<typeof session.runBatch>>
  try {
    // The attack is under way: every attacker has been answered at least once.
    const deadline = Date.now() + 120_000
    while ([...answers.values()].reduce((sum, n) => sum + n, 0) < attackers.length && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    batch = await session.runBatch(spec.tasks)
  } finally {
    stop.abort()
    await attack
    clearInterval(sampler)
  }

  // The job finished, with every tile right.
  assert.deepEqual(batch.failures, [])
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const outcome = { jobId: session.jobId, results: batch.results, failures: batch.failures, agreements: [], wallMs: 0, figures: session.figures() }
  assert.deepEqual(assembleRender(48, 36, tiles, outcome), await renderLocally({ runtime, width: 48, height: 36 }))
  await session.close()

  // The provider never held more for inbound frames than its caps, and the crowd (all on 127.0.0.1) no more than one
  // IP's part of the open share.
  assert.ok(samples.length > 0)
  const stats = provider.host.metrics().inbound
  assert.ok(stats.peakBufferedBytes <= limits.maxBytes, `peak ${stats.peakBufferedBytes}`)
  assert.ok(Math.max(...samples.map((s) => s.bufferedBytes)) <= limits.maxBytes)
  assert.ok(Math.max(...samples.map((s) => s.openBytes)) <= limits.openPerIpMaxBytes)
  // No attacker frame of 1 MiB or more was ever held: large frames need admission, which they lack (the honest
  // requestor's task frames are a few KiB).
  assert.ok(Math.max(...samples.map((s) => s.admittedBytes)) < 1 * MiB, 'an attacker\'s large frame was admitted')
  // The attack was refused, not merely survived: large frames by admission, unread; the rest once the budget was full
  // or their deadline passed.
  assert.ok(stats.notAdmitted > 0, `the provider refused no frame by admission: is its admit hook wired for run-task? (answers: ${JSON.stringify(Object.fromEntries(answers))})`)
  assert.ok((provider.host.metrics().protocols[runTaskProtocol.id]?.rejected['not-admitted'] ?? 0) > 0)
  // Once the attackers are gone, nothing they sent is held.
  await Promise.all(attackers.map((attacker) => attacker.stop()))
  const deadline = Date.now() + 60_000
  while (provider.host.metrics().inbound.bufferedBytes > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(provider.host.metrics().inbound.bufferedBytes, 0)
})
