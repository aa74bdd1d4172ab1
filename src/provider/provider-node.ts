/**
 * A whole provider node for one machine, as `hearth provider start` runs it: the node key and database in the data
 * directory, a libp2p host on the configured addresses, a chain client for the configured deployment, the runtimes
 * the owner allows, the provider agent, the owner's idle policy, and the local API that `status` and `stop` reach.
 *
 * `stop()` is graceful: new work is refused at once, running tasks get a grace period to finish (then are handed
 * back), what vouchers are owed is claimed on chain, and only then does the node close.
  *
 * This file wires the node together; its parts: the checks before start (node-checks.ts), the runtimes
 * (node-runtimes.ts), the agent's settings from the configuration (node-agent-settings.ts), the idle policy
 * (node-idle.ts), the status (node-status.ts) and the wind-down before stop (node-stop.ts).
 */

import { mkdir } from 'node:fs/promises'
import { join } from 'node:path'
import type { Address } from 'viem'
import { loadOrCreateIdentity } from '../identity/node-identity.ts'
import { createHost, type Host } from '../net/host.ts'
import { createChainClient } from '../payment/chain-client.ts'
import { openStore, type Store } from '../store/store.ts'
import { checkShare, machineFacts, type MachineFacts, type ProviderConfig } from './config.ts'
import type { IdleSources } from './idle-policy.ts'
import { createEventHub } from '../net/local-api-web.ts'
import { paymentsOf } from '../payment/payments-view.ts'
import { readEarnings, readEarningsHistory } from './earnings.ts'
import { providerCommands, serveLocalApi, type LocalApiServer } from './local-api.ts'
import { providerMetrics } from './provider-metrics.ts'
import { agentSettings } from './node-agent-settings.ts'
import { chainOf, ensureSoleProvider } from './node-checks.ts'
import { startIdleWatch } from './node-idle.ts'
import { openRuntimes } from './node-runtimes.ts'
import { providerStatus, type ProviderStatus } from './node-status.ts'
import { windDown } from './node-stop.ts'
import { breakEvenPrices, checkPricing, type OwnerCosts } from './profitability.ts'
import { createProviderAgent, type ProviderAgent } from './provider-agent.ts'

export type { ProviderStatus } from './node-status.ts'

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
  /** The built dashboard the local API serves (see api/web-assets.ts); none: the API alone. */
  dashboardDir?: string
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
  const events = createEventHub()
  const log = (line: string): void => {
    init.log?.(line)
    events.publish({ topic: 'provider', data: { line } })
  }
  await mkdir(dataDir, { recursive: true, mode: 0o700 })
  await ensureSoleProvider(dataDir)
  const machine = init.machine ?? machineFacts(dataDir)
  checkShare(config.resources, machine)
  const { deployment, rpcUrl } = await chainOf(config)

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
    const { runtime, native, docker, notEnabled } = openRuntimes(config, stops)
    const settings = agentSettings(config, dataDir)
    const agent = createProviderAgent({
      identity,
      host,
      store,
      payment: { client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress },
      runtime,
      runtimes: {
        ...(native === undefined ? {} : { native: { runtime: native, programs: config.runtimes.native } }),
        ...(docker === undefined ? {} : { docker: { runtime: docker } }),
      },
      ...settings,
      log,
    })

    const costs = ownerCosts(config)
    const share = { machineThreads: machine.threads, lentThreads: config.resources.threads }
    const priceCheck = checkPricing(settings.pricing, costs, share)
    const breakEven = breakEvenPrices(costs, share)
    if (priceCheck.warning !== undefined) log(`warning: ${priceCheck.warning}`)

    const monitor = await startIdleWatch({ config, agent, idleSources: init.idleSources, log })
    if (monitor !== undefined) stops.push(() => monitor.stop())
    await agent.start()
    stops.push(() => agent.stop())

    const startedAtMs = Date.now()
    const status = (): ProviderStatus =>
      providerStatus({ dataDir, config, identity, host, store, agent, startedAtMs, notEnabled, pricing: settings.pricing, costs, share, priceCheck, breakEven })

    let resolveStopped!: (report: StopReport) => void
    const stopped = new Promise<StopReport>((resolve) => (resolveStopped = resolve))
    let stopping: Promise<StopReport> | undefined
    const stop = (): Promise<StopReport> => {
      stopping ??= (async () => {
        monitor?.stop()
        const { handedBack, claimed } = await windDown({ agent, store, startedAtMs, graceMs: init.stopGraceMs ?? 30_000 })
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
      commands: providerCommands({
        status,
        earnings: () => readEarnings(store, { owner: costs, share }, agent.accounts.money()),
        earningsHistory: () => readEarningsHistory(store),
        config: () => config,
        payments: () => ({ dataDir, agreements: paymentsOf(store) }),
        pause: () => agent.pause('paused by the owner', { handBack: true }),
        resume: () => agent.resume(),
        stop: () => void stop(),
      }),
      web: { ...(init.dashboardDir === undefined ? {} : { assetsDir: init.dashboardDir }), metrics: () => providerMetrics(status()), events },
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
