/**
 * A whole provider node for one machine, as `hearth provider start` runs it: the node key and database in the data
 * directory, a libp2p host on the configured addresses, a chain client for the configured deployment, the runtimes
 * the owner allows, the provider agent, the owner's idle policy, and the local API that `status` and `stop` reach.
 *
 * `stop()` is graceful: new work is refused at once, running tasks get a grace period to finish (then are handed
 * back), what vouchers are owed is claimed on chain, and only then does the node close.
 */
import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address } from 'viem'
import { parseEther } from 'viem'
import { HearthError } from '../errors.ts'
import { loadOrCreateIdentity } from '../identity/node-identity.ts'
import type { DebitNote } from '../market/billing.ts'
import type { Pricing } from '../market/pricing.ts'
import { createHost, type Host, type PeerConnection } from '../net/host.ts'
import type { ReachabilityStatus } from '../net/reachability.ts'
import { createWasiRuntime } from '../exec/wasi-runtime.ts'
import { createNativeRuntime, type NativeRuntime } from '../exec/native-runtime.ts'
import { createDockerRuntime, defaultDockerSocket, type DockerRuntime } from '../exec/docker-runtime.ts'
import { existsSync } from 'node:fs'
import { createChainClient, rpcChainId } from '../payment/chain-client.ts'
import { readDeploymentFile } from '../payment/deploy.ts'
import { openStore, type Store } from '../store/store.ts'
import { checkShare, machineFacts, pricingFromConfig, type MachineFacts, type ProviderConfig } from './config.ts'
import { readEarnings, type EarningsReport } from './earnings.ts'
import { createIdleMonitor, powerKnown, systemIdleSources, type IdleMonitor, type IdleSources } from './idle-policy.ts'
import { readApiInfo, serveLocalApi, type LocalApiServer } from './local-api.ts'
import { breakEvenPrices, checkPricing, type OwnerCosts } from './profitability.ts'
import { createProviderAgent, type ProviderAgent, type ProviderStats, type RunningTasks } from './provider-agent.ts'

const gib = 1024 ** 3

export interface ProviderNodeInit {
  dataDir: string
  config: ProviderConfig
  /** The owner's load, power and clock; default: the machine's (see idle-policy.ts). Tests play the owner here. */
  idleSources?: IdleSources
  /** The machine, for the "never all of it" check; default: this one. */
  machine?: MachineFacts
  /** How long `stop()` lets running tasks finish before handing them back (default 30 s). */
  stopGraceMs?: number
  /** One line per event worth telling the owner (lending paused, resumed, warnings). */
  log?: (line: string) => void
}

export interface ProviderStatus {
  running: true
  pid: number
  dataDir: string
  peerId: string
  address: Address
  multiaddrs: string[]
  /** Whether others can dial this node (public, private through relays, unreachable and why), and each connection. */
  network: { reachability: ReachabilityStatus; connections: PeerConnection[] }
  startedAtMs: number
  uptimeSec: number
  lending: { active: boolean; reason: string | undefined }
  offer: {
    runtimes: string[]
    unavailable: string[]
    nativePrograms: string[]
    threads: number
    memoryGib: number
    diskGib: number
    cpuScore: number | undefined
    gpus: number
    location: ProviderConfig['location']
    pricing: ProviderConfig['pricing']
    pricingWei: Pricing
    /** Announced through a relay only (behind a NAT, no port forward). */
    relayed: boolean
    /** Reached through a relay only: relayed, and behind a symmetric NAT (no hole punch) or one no relay could classify. */
    relayOnly: boolean
  }
  tasks: RunningTasks
  stats: ProviderStats
  activeAgreements: number
  profitability: {
    currency: string
    costPerCpuHourWei: string
    revenuePerCpuHourWei: string
    coverage: number
    breakEven: { perTaskWei: string; perCpuSecWei: string }
  }
  earnings: EarningsReport['totals']
  /** Every agreement's money: exposure (running tasks included), vouchers, claims confirmed, in flight or failed. */
  agreements: EarningsReport['agreements']
  warnings: string[]
}

export interface StopReport {
  handedBack: number
  claimed: { agreementId: string; txHash: string; paidWei: string }[]
}

export interface ProviderNode {
  readonly peerId: string
  readonly address: Address
  readonly agent: ProviderAgent
  readonly host: Host
  readonly store: Store
  multiaddrs(): string[]
  status(): ProviderStatus
  /** Graceful stop (idempotent): resolves when the node is closed. */
  stop(): Promise<StopReport>
  /** Resolves once the node has stopped, however it was asked to (signal, `hearth provider stop`, `stop()`). */
  readonly stopped: Promise<StopReport>
}

export function ownerCosts(config: ProviderConfig): OwnerCosts {
  const { currency: _currency, ...costs } = config.costs
  return costs
}

export async function startProviderNode(init: ProviderNodeInit): Promise<ProviderNode> {
  const { config, dataDir } = init
  const log = init.log ?? (() => undefined)
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  // Two providers over one database and key would sign and claim against each other.
  const previous = await readApiInfo(dataDir)
  if (previous !== undefined && previous.pid !== process.pid && processAlive(previous.pid)) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `a provider (pid ${previous.pid}) is already running from ${dataDir}`, {
      hint: `stop it first: hearth provider stop --data-dir ${dataDir}`,
    })
  }
  const machine = init.machine ?? machineFacts(dataDir)
  checkShare(config.resources, machine)
  if (config.chain === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'provider config chain.deployment: expected a deployment file, got nothing; a provider is paid on chain', {
      hint: 'pass --deployment FILE (hearth chain --deployment-out FILE writes one for a development chain)',
    })
  }
  const deployment = await readDeploymentFile(config.chain.deployment)
  const rpcUrl = config.chain.rpcUrl ?? deployment.rpcUrl
  if (rpcUrl === undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `provider config chain.rpcUrl: expected a JSON-RPC URL; ${config.chain.deployment} names none`, { hint: 'pass --rpc URL' })
  }
  const served = await rpcChainId(rpcUrl)
  if (served !== deployment.chainId) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the deployment is for chain ${deployment.chainId} but ${rpcUrl} serves chain ${served}`)
  }

  const identity = await loadOrCreateIdentity(dataDir)
  const stops: (() => Promise<void> | void)[] = []
  const closeAll = async (): Promise<void> => {
    for (const stop of stops.reverse()) await Promise.resolve(stop()).catch(() => undefined)
    stops.length = 0
  }
  try {
    const store = openStore({ path: join(dataDir, 'node.db') })
    stops.push(() => store.close())
    const host = await createHost({
      identity,
      listen: config.listen,
      announce: config.announce,
      bootstrap: config.bootstrap,
      mdns: config.mdns,
      reachability: { mode: config.reachability, ...(config.relays === undefined ? {} : { relays: config.relays }) },
      ...(config.relay ? { relay: {} } : {}),
    })
    await host.start()
    stops.push(() => host.stop())
    const client = createChainClient({ transport: rpcUrl, privateKey: identity.privateKey, chainId: deployment.chainId })
    const runtime = createWasiRuntime({ maxWorkers: config.resources.threads })
    stops.push(() => runtime.close())
    const programs = config.runtimes.native
    let native: NativeRuntime | undefined
    if (Object.keys(programs).length > 0) {
      native = createNativeRuntime({ programs: Object.values(programs), allowedEnv: config.runtimes.nativeEnv })
      stops.push(() => native!.close())
    }
    let docker: DockerRuntime | undefined
    if (config.runtimes.docker !== false) {
      docker = createDockerRuntime({ socketPath: config.runtimes.docker })
      stops.push(() => docker!.close())
    }
    // Runtimes the owner has not enabled are not offered; status says so, and what enabling them would take.
    const notEnabled: string[] = []
    if (native === undefined) notEnabled.push('native: no programs allowed (list them under runtimes.native)')
    if (docker === undefined) {
      let socket: string | undefined
      try {
        socket = defaultDockerSocket()
      } catch {
        socket = undefined
      }
      notEnabled.push(socket !== undefined && existsSync(socket) ? `docker: not enabled (an engine answers at ${socket}; set runtimes.docker to it)` : 'docker: not enabled, and no Docker Engine socket was found')
    }
    const pricing = pricingFromConfig(config.pricing)
    const { location, admission, resources } = config
    const agent = createProviderAgent({
      identity,
      host,
      store,
      payment: { client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress },
      runtime,
      runtimes: {
        ...(native === undefined ? {} : { native: { runtime: native, programs } }),
        ...(docker === undefined ? {} : { docker: { runtime: docker } }),
      },
      workDir: join(dataDir, 'work'),
      pricing,
      threads: resources.threads,
      memGib: resources.memoryGib,
      properties: {
        'golem.inf.storage.gib': resources.diskGib,
        ...(location.countryCode === undefined ? {} : { 'golem.node.geo.country_code': location.countryCode }),
        ...(location.lat === undefined ? {} : { 'hearth.geo.lat': location.lat }),
        ...(location.lon === undefined ? {} : { 'hearth.geo.lon': location.lon }),
      },
      policy: {
        maxConcurrentAgreements: admission.maxConcurrentAgreements,
        maxAgreementSec: admission.maxJobDurationSec,
        maxDebitNoteIntervalSec: config.payments.maxDebitNoteIntervalSec,
        ...(admission.allowedRequestors.length === 0 ? {} : { allowedRequestors: new Set(admission.allowedRequestors.map((a) => a.toLowerCase())) }),
        ...(admission.deniedRequestors.length === 0 ? {} : { deniedRequestors: new Set(admission.deniedRequestors.map((a) => a.toLowerCase())) }),
      },
      admission: {
        maxTotalMemoryBytes: Math.floor((admission.maxTotalMemoryGib ?? resources.memoryGib) * gib),
        maxTotalDiskBytes: Math.floor((admission.maxTotalDiskGib ?? resources.diskGib) * gib),
      },
      claimPolicy: {
        ...(config.claim.thresholdHtt === undefined ? {} : { thresholdWei: parseEther(config.claim.thresholdHtt) }),
        confirmations: config.payments.confirmations,
      },
      accountLimits: {
        maxUnpaidTasks: config.payments.maxUnpaidTasks,
        ...(config.payments.maxUnpaidHtt === undefined ? {} : { maxUnpaidWei: parseEther(config.payments.maxUnpaidHtt) }),
        minClaimGraceSec: config.payments.minClaimGraceSec,
      },
      ...(config.payments.payoutAddress === undefined ? {} : { payoutAddress: config.payments.payoutAddress as Address }),
      log,
    })

    const costs = ownerCosts(config)
    const share = { machineThreads: machine.threads, lentThreads: resources.threads }
    const priceCheck = checkPricing(pricing, costs, share)
    const breakEven = breakEvenPrices(costs, share)
    if (priceCheck.warning !== undefined) log(`warning: ${priceCheck.warning}`)

    let monitor: IdleMonitor | undefined
    if (config.idle.enabled) {
      const sources = init.idleSources ?? systemIdleSources(() => agent.running().childTasks)
      if (init.idleSources === undefined && config.idle.requireMains && !powerKnown()) {
        log('warning: idle.requireMains cannot be honoured here: only on Linux does Hearth see whether the machine runs on battery')
      }
      monitor = createIdleMonitor({
        rules: config.idle,
        sources,
        checkEveryMs: config.idle.checkEverySec * 1000,
        resumeAfterMs: config.idle.resumeAfterSec * 1000,
        onChange: async ({ lending, reason }) => {
          if (lending) {
            await agent.resume()
            log('lending: the machine is idle; taking work')
          } else {
            // The owner is back: no new work, and running tasks go back to their requestors.
            const handedBack = agent.running().tasks
            await agent.pause(reason ?? 'the owner is using the machine', { handBack: true })
            log(`lending paused: ${reason ?? 'the owner is using the machine'}${handedBack > 0 ? ` (${handedBack} running tasks handed back)` : ''}`)
          }
        },
      })
      // The first look decides whether the offer goes out at start.
      await monitor.check()
      monitor.start()
      stops.push(() => monitor!.stop())
    }
    await agent.start()
    stops.push(() => agent.stop())

    const startedAtMs = Date.now()
    const status = (): ProviderStatus => {
      const offer = agent.currentOffer()?.payload.properties ?? {}
      const lending = agent.lending()
      const earnings = readEarnings(store, { owner: costs, share }, agent.accounts.money())
      const strings = (value: unknown): string[] => (Array.isArray(value) ? value.map(String) : [])
      const warnings = [...(priceCheck.warning === undefined ? [] : [priceCheck.warning])]
      return {
        running: true,
        pid: process.pid,
        dataDir,
        peerId: host.peerId.toString(),
        address: identity.address,
        multiaddrs: host.multiaddrs(),
        network: { reachability: host.reachability(), connections: host.connections() },
        startedAtMs,
        uptimeSec: Math.round((Date.now() - startedAtMs) / 1000),
        lending: { active: !lending.paused, reason: lending.reason },
        offer: {
          runtimes: strings(offer['golem.runtime.name']),
          unavailable: [...strings(offer['hearth.runtime.unavailable']), ...notEnabled],
          nativePrograms: strings(offer['hearth.runtime.native.programs']),
          threads: resources.threads,
          memoryGib: resources.memoryGib,
          diskGib: resources.diskGib,
          cpuScore: typeof offer['hearth.inf.cpu.score'] === 'number' ? offer['hearth.inf.cpu.score'] : undefined,
          gpus: typeof offer['hearth.inf.gpu.count'] === 'number' ? offer['hearth.inf.gpu.count'] : 0,
          relayed: offer['hearth.net.relayed'] === true,
          relayOnly: offer['hearth.net.relayOnly'] === true,
          location,
          pricing: config.pricing,
          pricingWei: pricing,
        },
        tasks: agent.running(),
        stats: agent.stats(),
        activeAgreements: store.agreements.list({ state: 'approved' }).filter((a) => a.role === 'provider').length,
        profitability: {
          currency: config.costs.currency,
          costPerCpuHourWei: priceCheck.costPerCpuHourWei.toString(),
          revenuePerCpuHourWei: priceCheck.revenuePerCpuHourWei.toString(),
          coverage: priceCheck.ratio,
          breakEven: { perTaskWei: breakEven.perTask.perTaskWei, perCpuSecWei: breakEven.linear.perCpuSecWei },
        },
        earnings: earnings.totals,
        agreements: earnings.agreements,
        warnings,
      }
    }

    /** Whether a debit note this run sent is not yet covered by a voucher. */
    const awaitingVouchers = (): boolean =>
      store.paymentDocuments
        .list({ kind: 'debit-note' })
        .some((note) => note.createdAtMs >= startedAtMs && BigInt((note.document as DebitNote).amountDueWei) > (store.vouchers.latest(note.agreementId)?.cumulativeWei ?? 0n))

    let resolveStopped!: (report: StopReport) => void
    const stopped = new Promise<StopReport>((resolve) => (resolveStopped = resolve))
    let stopping: Promise<StopReport> | undefined
    const stop = (): Promise<StopReport> => {
      stopping ??= (async () => {
        monitor?.stop()
        // Stop taking work first; running tasks may finish within the grace period.
        await agent.pause('the provider is stopping')
        const deadline = Date.now() + (init.stopGraceMs ?? 30_000)
        while (agent.running().tasks > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100))
        const handedBack = agent.running().tasks
        if (handedBack > 0) {
          await agent.pause('the provider is stopping', { handBack: true })
          // A handed-back task answers its requestor (retry elsewhere) once its run is killed; the host stays up until
          // then (and a moment more for the answer to be written), else the requestor sees only a closed stream.
          const answered = Date.now() + 10_000
          while (agent.running().tasks > 0 && Date.now() < answered) await new Promise((r) => setTimeout(r, 20))
          await new Promise((r) => setTimeout(r, 100))
        }
        // A requestor answers a finished task's debit note with a voucher right after the result: those on their way
        // are waited for (a little), so that what the tasks earned is claimed now rather than at the next start.
        const vouchersDue = Date.now() + 5_000
        while (awaitingVouchers() && Date.now() < vouchersDue) await new Promise((r) => setTimeout(r, 50))
        // What requestors have signed over is claimed before the node goes: a restart would claim it too, but the
        // owner may not restart before the agreements expire.
        const claimed = await agent.claimOutstanding().catch(() => [])
        await api.close().catch(() => undefined)
        await closeAll()
        const report = { handedBack, claimed: claimed.map((c) => ({ ...c, paidWei: c.paidWei.toString() })) }
        resolveStopped(report)
        return report
      })()
      return stopping
    }

    const api: LocalApiServer = await serveLocalApi({
      dataDir,
      info: { peerId: host.peerId.toString(), address: identity.address, multiaddrs: host.multiaddrs(), startedAtMs },
      handle: async (command) => {
        if (command === 'status') return status()
        if (command === 'pause') {
          await agent.pause('paused by the owner', { handBack: true })
          return status()
        }
        if (command === 'resume') {
          await agent.resume()
          return status()
        }
        // Answer first, then stop: the caller waits for the process to go.
        setImmediate(() => void stop())
        return { stopping: true, pid: process.pid }
      },
    })

    return {
      peerId: host.peerId.toString(),
      address: identity.address,
      agent,
      host,
      store,
      multiaddrs: () => host.multiaddrs(),
      status,
      stop,
      stopped,
    }
  } catch (error) {
    await closeAll()
    throw error
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    // EPERM: alive, but another user's.
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}
