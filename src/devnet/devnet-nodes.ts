/**
 * The devnet's nodes: each a libp2p host on this machine with its own store and chain account; providers with their
 * runtimes and agents (priced 10% apart, some misbehaving on request), and the requestor that verifies their results.
 */
import { join } from 'node:path'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { createHost } from '../net/host.ts'
import { createDockerRuntime } from '../exec/docker-runtime.ts'
import { createNativeRuntime } from '../exec/native-runtime.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import type { EscrowContext } from '../payment/escrow.ts'
import { createProviderAgent } from '../provider/provider-agent.ts'
import { createRequestor, type Requestor } from '../requestor/requestor.ts'
import { createReputationBook } from '../requestor/reputation.ts'
import { seededRandom } from '../seeded-random.ts'
import { openStore } from '../store/store.ts'
import type { DevnetInit, DevnetNode, DevnetProvider, DevnetStop } from './devnet-types.ts'

/** One node's host, listening on `listenHost` (default 127.0.0.1), with its store under DATADIR/<name>/. */
export async function startDevnetNode(
  node: { name: string; identity: NodeIdentity; payment: EscrowContext },
  options: { dataDir: string; listenHost: string | undefined },
  stops: DevnetStop[],
): Promise<DevnetNode> {
  const { name, identity } = node
  const store = openStore({ path: join(options.dataDir, name, 'node.db') })
  stops.push(() => store.close())
  const host = await createHost({ identity, bootstrap: [], listen: [`/ip4/${options.listenHost ?? '127.0.0.1'}/tcp/0`] })
  await host.start()
  stops.push(() => host.stop())
  return { name, identity, host, store, payment: node.payment }
}

/** What sets provider `index` apart from the others: its price, and whether it stays silent or returns wrong results. */
export interface ProviderPlace {
  index: number
  threads: number
  basePerTaskWei: bigint
  /** Providers from this index on never answer proposals. */
  silentFrom: number
  /** Providers below this index return wrong results. */
  badProviders: number
  dataDir: string
}

/** Starts provider `place.index`'s runtimes and agent on its node. */
export async function startDevnetProvider(init: DevnetInit, base: DevnetNode, place: ProviderPlace, stops: DevnetStop[]): Promise<DevnetProvider> {
  const { index: i, threads, silentFrom, badProviders } = place
  const runtime = createWasiRuntime({ maxWorkers: threads })
  stops.push(() => runtime.close())
  const programs = init.nativePrograms ?? {}
  const native = Object.keys(programs).length === 0 ? undefined : createNativeRuntime({ programs: Object.values(programs) })
  if (native !== undefined) stops.push(() => native.close())
  const docker = init.dockerSocket === undefined ? undefined : createDockerRuntime({ socketPath: init.dockerSocket })
  if (docker !== undefined) stops.push(() => docker.close())
  const agent = createProviderAgent({
    identity: base.identity,
    host: base.host,
    store: base.store,
    payment: base.payment,
    runtime,
    workDir: join(place.dataDir, base.name, 'work'),
    pricing: init.providerPricing?.(i) ?? { model: 'per-task', perTaskWei: ((place.basePerTaskWei * BigInt(10 + i)) / 10n).toString() },
    threads,
    memGib: 1,
    ...(init.providerProperties === undefined ? {} : { properties: init.providerProperties(i) }),
    ...(init.providerConstraints === undefined ? {} : { constraints: init.providerConstraints(i) }),
    ...(init.providerClaimPolicy === undefined ? {} : { claimPolicy: init.providerClaimPolicy }),
    ...(init.providerAccountLimits === undefined ? {} : { accountLimits: init.providerAccountLimits }),
    ...(init.providerActivityMeterEveryMs === undefined ? {} : { activityMeterEveryMs: init.providerActivityMeterEveryMs }),
    ...(init.providerServices === true ? { services: { enabled: true } } : {}),
    ...(init.providerStorage?.(i) === undefined ? {} : { storage: { ...init.providerStorage(i)!, dir: join(place.dataDir, base.name, 'storage') } }),
    ...(init.providerPayoutAddress?.(i) === undefined ? {} : { payoutAddress: init.providerPayoutAddress(i)! }),
    runtimes: {
      ...(native === undefined ? {} : { native: { runtime: native, programs } }),
      ...(docker === undefined ? {} : { docker: { runtime: docker } }),
    },
    ...(i >= silentFrom || i < badProviders || init.providerMisbehave?.(i) !== undefined
      ? {
          misbehave: {
            ...(i >= silentFrom ? { silentNegotiation: true } : {}),
            // Seeded by position, so a devnet picks the same tasks to get wrong on every run.
            ...(i < badProviders ? { wrongResults: { rate: init.badProviderRate ?? 0.5, seed: i + 1 } } : {}),
            ...init.providerMisbehave?.(i),
          },
        }
      : {}),
  })
  await agent.start()
  stops.push(() => agent.stop())
  return { ...base, agent, runtime }
}

/** Starts the requestor's agent on its node: it verifies results unless `trustAllResults`, and recomputes spot checks here. */
export async function startDevnetRequestor(init: DevnetInit, node: DevnetNode, stops: DevnetStop[]): Promise<Requestor> {
  // Spot checks recompute wasi tasks here; workers start only when a check runs.
  const requestorRuntime = init.requestorLocalRuntime ?? createWasiRuntime({ maxWorkers: 1 })
  if (init.requestorLocalRuntime === undefined) stops.push(() => requestorRuntime.close())
  const requestor = createRequestor({
    localRuntime: requestorRuntime,
    identity: node.identity,
    host: node.host,
    store: node.store,
    payment: node.payment,
    ...(init.requestorIgnoresDebitNotes === true ? { misbehave: { ignoreDebitNotes: true } } : {}),
    // Results are verified unless a test wants to see what unverified results look like.
    ...(init.trustAllResults === true ? {} : { reputation: createReputationBook(node.store, init.verificationSeed === undefined ? {} : { random: seededRandom(init.verificationSeed) }) }),
    ...(init.verificationSeed === undefined ? {} : { random: seededRandom(init.verificationSeed + 1) }),
  })
  await requestor.start()
  stops.push(() => requestor.stop())
  return requestor
}
