/**
 * The services a requestor node owns: for each, N replicas kept running on providers in the regions its spec names.
 * The node checks every replica's health through its provider (HTTP GET of the spec's path over a tunnel); a replica
 * that fails `failuresBeforeDown` checks in a row, or whose activity ended, leaves rotation at once and is restarted
 * in place (a new activity under the same agreement) while its provider answers, else replaced on another provider
 * through the market. An update starts each new replica and waits until it is healthy before the old one leaves
 * rotation and stops, so the service never has fewer healthy replicas than before. Agreements last a day by default
 * and are renewed before they end, the same way: a new agreement with the same provider, its replica serving before
 * the old one stops and its agreement is settled. Their escrows are topped up as the replicas run (the accounts do
 * it: market/escrow-ahead.ts), so about two and a half hours of uptime are locked at once, not the day. Removing a
 * service ends its
 * activities and settles every agreement it used (the providers claim what was metered; the rest is refunded).
 *
 * Gateways take their routes from here (`routes`): the replicas in rotation, each reached over a tunnel.
 */
import { randomUUID } from 'node:crypto'
import type { Duplex } from 'node:stream'
import { HearthError, toHearthError } from '../errors.ts'
import { terminalStates } from '../exec/exescript.ts'
import type { ServiceNotice } from '../exec/exescript-protocols.ts'
import type { ActivityHandle } from './activity-client.ts'
import type { GatewayReplica, GatewayRoutes } from './gateway.ts'
import { offerTarget } from './negotiator.ts'
import { createReplicaLinks, type ReplicaLinks } from './replica-link.ts'
import { attachServer, checkHealth, placeReplica, startServer, type Placement, type ReplicaDeps, type ServicePackage } from './service-replicas.ts'
import { loadServices, saveService, type SavedService } from './service-store.ts'
import { parseServiceSpec, replicaSlots, type ServiceSpec, type ServiceSpecInput } from './service-spec.ts'

export type ReplicaState = 'starting' | 'serving' | 'down' | 'stopped'

export interface ReplicaStatus {
  id: string
  region: string | undefined
  version: string
  provider: string
  agreementId: string
  activityId: string | undefined
  state: ReplicaState
  inRotation: boolean
  lastError: string | undefined
  restarts: number
}

export interface ServiceStatus {
  name: string
  version: string
  replicas: ReplicaStatus[]
  /** Replicas the spec asks for. */
  wanted: number
}

export type ReplicaEvent = 'serving' | 'down' | 'restarted' | 'replaced' | 'renewed' | 'moved' | 'stopped'

export interface ServiceEvents {
  /** Replicas leaving or joining rotation, restarts, replacements; for logs and tests. */
  onEvent?(event: { service: string; replica: string; type: ReplicaEvent; detail: string }): void
}

interface Replica {
  id: string
  /** The region its slot asks for (undefined: any). */
  region: string | undefined
  placement: Placement
  pkg: ServicePackage
  activity: ActivityHandle | undefined
  state: ReplicaState
  failures: number
  lastError: string | undefined
  restarts: number
  /** When it last left rotation, or was last tried again. */
  downSinceMs: number
  /** A restart, replacement or renewal in progress. */
  healing: Promise<void> | undefined
}

export interface Service {
  readonly name: string
  status(): ServiceStatus
  /** What gateways route to: the replicas serving now. */
  routes(): GatewayRoutes
  /** The newest bytes of a replica's server log. */
  logs(replicaId: string, tailBytes?: number): Promise<string>
  /** The spec it runs now. */
  spec(): ServiceSpec
  /** Where a gateway reaches a replica in rotation: its provider's peer id and addresses, and its activity. */
  route(replicaId: string): { peerId: string; multiaddrs: string[]; activityId: string } | undefined
  /** Changes how many replicas run, per region or in total. */
  scale(replicas: ServiceSpec['replicas']): Promise<void>
  /** Rolls every replica to a new version of the service, one at a time, never below the healthy count before. */
  update(next: ServiceSpecInput, bytes?: Uint8Array): Promise<void>
  /** Stops every replica and settles every agreement; resolves with what each was paid. */
  remove(): Promise<{ agreementId: string; paidWei: bigint }[]>
  /**
   * A notice from provider `from` that it ends one of its replicas soon: a replacement is placed elsewhere in the
   * region at once. False when the notice names no replica of this service on that provider (or one already moving).
   */
  notice(from: string, notice: ServiceNotice): boolean
}

export interface ServicesInit extends ReplicaDeps, ServiceEvents {
  /**
   * Where the services' packages are kept (the node's `services/` folder): with it, every service is saved in the
   * store as its replicas change (service-store.ts) and `restore` takes them up again after a restart.
   */
  packageDir?: string
  /** Where problems with saving or restoring, and replicas reached through tunnels for want of a direct link, are reported. */
  log?(line: string): void
  /**
   * Reach replicas over direct links (TCP and TLS, replica-link.ts) where this node reaches their providers directly
   * (default true; false: through libp2p tunnels only).
   */
  directLinks?: boolean
}

export interface Services {
  deploy(spec: ServiceSpecInput, bytes?: Uint8Array): Promise<Service>
  get(name: string): Service | undefined
  list(): ServiceStatus[]
  /**
   * Takes up the services saved before this node last stopped (needs `packageDir`): replicas whose activity still runs
   * are attached as they are, the others brought back like lost ones. Resolves with their status.
   */
  restore(): Promise<ServiceStatus[]>
  /** Hands a provider's notice (service-notice) to the service whose replica it names; true when a move started. */
  notice(from: string, notice: ServiceNotice): boolean
  /** Stops the health checks and closes spare links (replicas keep running until removed). */
  close(): void
}

export function createServices(init: ServicesInit): Services {
  const links = createReplicaLinks(init.host, { direct: init.directLinks ?? true, ...(init.log === undefined ? {} : { log: init.log }) })
  const services = new Map<string, Service>()
  /** Names being deployed: a second deploy of one name while the first places its replicas is refused too. */
  const deploying = new Set<string>()
  return {
    async deploy(input, bytes) {
      const spec = parseServiceSpec(input)
      if (services.has(spec.name) || deploying.has(spec.name)) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `service ${spec.name} exists already`, { hint: 'update it, or remove it first' })
      deploying.add(spec.name)
      try {
        const service = await startService(init, links, { spec, ...(bytes === undefined ? {} : { bytes }) }, () => services.delete(spec.name))
        services.set(spec.name, service)
        return service
      } finally {
        deploying.delete(spec.name)
      }
    },
    async restore() {
      if (init.packageDir === undefined) return []
      const restored: ServiceStatus[] = []
      for (const saved of await loadServices(init.store, init.packageDir, init.log ?? (() => undefined))) {
        const name = saved.current.spec.name
        if (services.has(name)) continue
        const service = await startService(init, links, saved.current, () => services.delete(name), saved)
        services.set(name, service)
        restored.push(service.status())
      }
      return restored
    },
    get: (name) => services.get(name),
    list: () => [...services.values()].map((service) => service.status()),
    notice: (from, notice) => [...services.values()].some((service) => service.notice(from, notice)),
    close() {
      for (const service of services.values()) (service as Service & { stopChecks(): void }).stopChecks()
      links.close()
    },
  }
}

/**
 * Replicas saved before the node stopped: serving where their activity is still there (checked at the next round like
 * any other), down otherwise, to be brought back at once (in place first).
 */
function takeUp(run: ServiceRun, saved: SavedService): void {
  for (const id of saved.usedAgreements) run.usedAgreements.add(id)
  for (const { activityId, ...kept } of saved.replicas) {
    const activity = attachServer(run.init, kept.placement, activityId)
    const replica: Replica = { ...kept, activity, state: activity === undefined ? 'down' : 'serving', failures: 0, downSinceMs: 0, healing: undefined, lastError: activity === undefined ? 'its activity ended while the owner\'s node was away' : undefined }
    run.replicas.set(replica.id, replica)
  }
}

/** A running service: what it runs now, its replicas, and the agreements it has used (settled at removal). */
interface ServiceRun {
  init: ServicesInit
  /** How this node reaches the replicas' servers (its health checks, and the gateways it runs itself). */
  links: ReplicaLinks
  name: string
  current: ServicePackage
  replicas: Map<string, Replica>
  usedAgreements: Set<string>
  removed: boolean
  updating: boolean
  checking: boolean
  /** The last save of the service in progress (saves run one after another). */
  saving: Promise<void>
  forget(): void
}


function emit(run: ServiceRun, replica: Replica, type: ReplicaEvent, detail: string): void {
  run.init.onEvent?.({ service: run.name, replica: replica.id, type, detail })
  persist(run)
}

/** Saves the service as it stands now (after the saves before it), when the node keeps its services. */
function persist(run: ServiceRun): Promise<void> {
  const { init } = run
  if (init.packageDir === undefined) return run.saving
  const dir = init.packageDir
  run.saving = run.saving.then(async () => {
    if (run.removed) return
    const replicas = [...run.replicas.values()].filter((replica) => replica.state !== 'stopped').map((replica) => ({
      id: replica.id,
      region: replica.region,
      placement: replica.placement,
      pkg: replica.pkg,
      activityId: replica.activity?.id,
      restarts: replica.restarts,
    }))
    await saveService(init.store, dir, run.name, { current: run.current, replicas, usedAgreements: [...run.usedAgreements] })
  }).catch((error: unknown) => init.log?.(`service ${run.name} could not be saved: ${toHearthError(error).shortMessage}`))
  return run.saving
}

/** Providers of the other replicas: a replica is placed elsewhere, so that one provider's loss takes one replica. */
function avoidFor(run: ServiceRun, except?: Replica): Set<string> {
  return new Set([...run.replicas.values()].filter((r) => r !== except && r.state !== 'stopped').map((r) => r.placement.offer.provider.toLowerCase()))
}

async function launch(run: ServiceRun, region: string | undefined, pkg: ServicePackage, placement?: Placement, avoid: Set<string> = avoidFor(run)): Promise<Replica> {
  const placed = placement ?? (await placeReplica(run.init, pkg.spec, { region, avoid }))
  run.usedAgreements.add(placed.agreement.id)
  const replica: Replica = { id: randomUUID().slice(0, 12), region, placement: placed, pkg, activity: undefined, downSinceMs: 0, state: 'starting', failures: 0, lastError: undefined, restarts: 0, healing: undefined }
  replica.activity = await startServer(run.init, placed, pkg, pkg.spec.gateways)
  replica.state = 'serving'
  return replica
}

function connectTo(run: ServiceRun, replica: Replica): (signal: AbortSignal) => Promise<Duplex> {
  return (signal) => {
    const activityId = replica.activity?.id
    if (activityId === undefined) return Promise.reject(new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', `replica ${replica.id} has no server now`))
    return run.links.connect({ target: offerTarget(replica.placement.offer), activityId }, signal)
  }
}

async function stopReplica(run: ServiceRun, replica: Replica, why: string): Promise<void> {
  replica.state = 'stopped'
  run.replicas.delete(replica.id)
  await replica.activity?.terminate().catch(() => undefined)
  emit(run, replica, 'stopped', why)
}

/** Brings a failed replica back: a new activity under its agreement, else a new provider through the market. */
async function heal(run: ServiceRun, replica: Replica): Promise<void> {
  await replica.activity?.terminate().catch(() => undefined)
  replica.activity = undefined
  try {
    const activity = await startServer(run.init, replica.placement, replica.pkg, replica.pkg.spec.gateways)
    if (run.replicas.get(replica.id) !== replica) {
      await activity.terminate().catch(() => undefined)
      return
    }
    replica.activity = activity
    replica.restarts++
    replica.failures = 0
    replica.state = 'serving'
    emit(run, replica, 'restarted', `in place on ${replica.placement.offer.provider}`)
    return
  } catch (error) {
    replica.lastError = toHearthError(error).shortMessage
  }
  const lost = replica.placement.offer.provider.toLowerCase()
  const next = await launch(run, replica.region, replica.pkg, undefined, new Set([...avoidFor(run, replica), lost]))
  const stillWanted = run.replicas.get(replica.id) === replica
  run.replicas.delete(replica.id)
  replica.state = 'stopped'
  // The lost provider's agreement is settled for what it metered; its replica is gone.
  void run.init.accounts.account(replica.placement.agreement.id).settle().catch(() => undefined)
  // Removed, scaled away or replaced by an update while this one healed: the new replica is not wanted either.
  if (run.removed || !stillWanted) {
    await next.activity?.terminate().catch(() => undefined)
    return
  }
  run.replicas.set(next.id, next)
  emit(run, next, 'replaced', `replica ${replica.id} on ${lost} replaced on ${next.placement.offer.provider}`)
}

/** Waits for the restarts and replacements under way, so that a change starts from replicas that stand still. */
async function settleHealing(run: ServiceRun): Promise<void> {
  await Promise.all([...run.replicas.values()].map((replica) => replica.healing?.catch(() => undefined)))
}

/** Out of rotation at once, and healed in the background (once at a time). */
function markDown(run: ServiceRun, replica: Replica, reason: string): void {
  if (replica.state !== 'serving' || run.removed) return
  replica.state = 'down'
  replica.downSinceMs = Date.now()
  replica.lastError = reason
  emit(run, replica, 'down', reason)
  replica.healing ??= heal(run, replica)
    .catch((error: unknown) => {
      replica.lastError = toHearthError(error).shortMessage
    })
    .finally(() => {
      replica.healing = undefined
    })
}

/** How long before its agreement ends a replica is moved to a new one: a tenth of the agreement, at least 30 s. */
function renewBeforeMs(agreementSec: number): number {
  return Math.max(30, Math.floor(agreementSec / 10)) * 1000
}

/**
 * Renews a replica's agreement before it ends: a new agreement with the same provider (else another in the region),
 * whose replica serves before the old one stops; the old agreement is then settled.
 */
async function renew(run: ServiceRun, replica: Replica): Promise<void> {
  const provider = replica.placement.offer.provider
  const placement = await placeReplica(run.init, replica.pkg.spec, { region: replica.region, avoid: new Set(), only: provider })
    .catch(() => placeReplica(run.init, replica.pkg.spec, { region: replica.region, avoid: avoidFor(run, replica) }))
  const fresh = await launch(run, replica.region, replica.pkg, placement)
  if (run.removed || run.replicas.get(replica.id) !== replica) {
    await fresh.activity?.terminate().catch(() => undefined)
    return
  }
  run.replicas.set(fresh.id, fresh)
  emit(run, fresh, 'renewed', `agreement ${replica.placement.agreement.id} renewed as ${placement.agreement.id} on ${placement.offer.provider}`)
  await stopReplica(run, replica, 'its agreement was renewed')
  await run.init.accounts.account(replica.placement.agreement.id).settle().catch(() => undefined)
}

function renewDue(run: ServiceRun): void {
  if (run.updating || run.removed) return
  const nowMs = Date.now()
  for (const replica of run.replicas.values()) {
    const endsMs = replica.placement.agreement.terms.expiresAtSec * 1000
    if (replica.state !== 'serving' || replica.healing !== undefined || endsMs - nowMs > renewBeforeMs(replica.pkg.spec.agreementSec)) continue
    replica.healing = renew(run, replica)
      .catch((error: unknown) => {
        replica.lastError = `renewing its agreement failed: ${toHearthError(error).shortMessage}`
      })
      .finally(() => {
        replica.healing = undefined
      })
  }
}

/**
 * Moves a replica whose provider gave notice: a replacement on another provider of its region serves before the old
 * one leaves rotation and stops. When none can be placed, the old one serves until its provider ends it, and is then
 * healed as any lost replica.
 */
async function move(run: ServiceRun, replica: Replica, why: string): Promise<void> {
  const leaving = replica.placement.offer.provider.toLowerCase()
  const fresh = await launch(run, replica.region, replica.pkg, undefined, new Set([...avoidFor(run, replica), leaving]))
  if (run.removed || run.replicas.get(replica.id) !== replica) {
    await fresh.activity?.terminate().catch(() => undefined)
    return
  }
  run.replicas.set(fresh.id, fresh)
  emit(run, fresh, 'moved', `replica ${replica.id} on ${leaving} moved to ${fresh.placement.offer.provider}: ${why}`)
  await stopReplica(run, replica, `its provider gave notice: ${why}`)
  await run.init.accounts.account(replica.placement.agreement.id).settle().catch(() => undefined)
}

function takeNotice(run: ServiceRun, from: string, notice: ServiceNotice): boolean {
  const replica = [...run.replicas.values()].find((r) => r.activity?.id === notice.activityId && r.placement.agreement.id === notice.agreementId)
  // Only the provider that runs the replica can move it: anyone else's notice names nothing.
  if (replica === undefined || replica.placement.offer.provider.toLowerCase() !== from.toLowerCase()) return false
  if (replica.state !== 'serving' || replica.healing !== undefined || run.updating || run.removed) return false
  replica.lastError = `its provider gave notice: ${notice.reason}`
  replica.healing = move(run, replica, notice.reason)
    .catch((error: unknown) => {
      replica.lastError = `moving it after its provider's notice failed: ${toHearthError(error).shortMessage}`
    })
    .finally(() => {
      replica.healing = undefined
    })
  return true
}

/** How long a replica that could not be brought back waits before the next try. */
const healRetryMs = 5_000

/** Tries again, now and then, to bring back replicas whose last restart and replacement both failed. */
function retryDown(run: ServiceRun): void {
  const nowMs = Date.now()
  for (const replica of run.replicas.values()) {
    if (replica.state !== 'down' || replica.healing !== undefined || nowMs - replica.downSinceMs < healRetryMs) continue
    replica.downSinceMs = nowMs
    replica.healing = heal(run, replica)
      .catch((error: unknown) => {
        replica.lastError = toHearthError(error).shortMessage
      })
      .finally(() => {
        replica.healing = undefined
      })
  }
}

async function checkAll(run: ServiceRun): Promise<void> {
  renewDue(run)
  retryDown(run)
  const { health } = run.current.spec
  await Promise.all([...run.replicas.values()].filter((replica) => replica.state === 'serving').map(async (replica) => {
    if (replica.activity !== undefined && terminalStates.includes(replica.activity.state())) {
      markDown(run, replica, 'its activity ended')
      return
    }
    const result = await checkHealth(connectTo(run, replica), health.path, health.timeoutMs)
    if (result.ok) {
      replica.failures = 0
      return
    }
    replica.failures++
    replica.lastError = result.reason
    if (replica.failures >= health.failuresBeforeDown) markDown(run, replica, result.reason)
  }))
}

function statusOf(run: ServiceRun): ServiceStatus {
  return {
    name: run.name,
    version: run.current.spec.version,
    wanted: replicaSlots(run.current.spec).length,
    replicas: [...run.replicas.values()].map((replica) => ({
      id: replica.id,
      region: replica.placement.region,
      version: replica.pkg.spec.version,
      provider: replica.placement.offer.provider,
      agreementId: replica.placement.agreement.id,
      activityId: replica.activity?.id,
      state: replica.state,
      inRotation: replica.state === 'serving',
      lastError: replica.lastError,
      restarts: replica.restarts,
    })),
  }
}

function routesOf(run: ServiceRun): GatewayRoutes {
  const asGateway = (replica: Replica): GatewayReplica => ({
    id: replica.id,
    region: replica.placement.region ?? 'any',
    version: replica.pkg.spec.version,
    connect: connectTo(run, replica),
    path: () => (replica.activity === undefined ? undefined : run.links.pathOf(replica.activity.id)),
  })
  return {
    replicas: () => [...run.replicas.values()].filter((replica) => replica.state === 'serving').map(asGateway),
    healthPath: () => run.current.spec.health.path,
    reportDown(replicaId, reason) {
      const replica = run.replicas.get(replicaId)
      if (replica === undefined || replica.state !== 'serving') return
      // A gateway's word counts as one failed check: the node's own checks confirm before it acts.
      replica.failures++
      if (replica.failures >= run.current.spec.health.failuresBeforeDown) markDown(run, replica, `a gateway saw it fail: ${reason}`)
    },
  }
}

async function logsOf(run: ServiceRun, replicaId: string, tailBytes: number): Promise<string> {
  const replica = run.replicas.get(replicaId)
  if (replica?.activity === undefined) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `service ${run.name} has no replica ${replicaId} running`, { hint: 'see hearth service status for its replicas' })
  const outcome = await replica.activity.exec([{ logs: { tailBytes } }]).result
  const result = outcome.results[0]
  if (result?.ok !== true) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `the logs of replica ${replicaId} could not be read: ${result?.error?.message ?? 'no answer'}`)
  return Buffer.from(result.stdoutBase64 ?? '', 'base64').toString('utf8')
}

/** Each replica in turn: the new one starts beside the old (same agreement where it can) and serves before the old stops. */
async function update(run: ServiceRun, input: ServiceSpecInput, bytes: Uint8Array | undefined): Promise<void> {
  if (run.updating || run.removed) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `service ${run.name} is ${run.removed ? 'removed' : 'being updated already'}`)
  const spec = parseServiceSpec(input)
  if (spec.name !== run.name) throw new HearthError('HEARTH_ERR_SERVICE_INVALID', `an update of ${run.name} names service ${spec.name}`)
  run.updating = true
  await settleHealing(run)
  const next: ServicePackage = { spec, ...(bytes === undefined ? {} : { bytes }) }
  try {
    for (const old of [...run.replicas.values()]) {
      const fresh = await launch(run, old.region, next, old.placement).catch(() => launch(run, old.region, next, undefined, avoidFor(run, old)))
      run.replicas.set(fresh.id, fresh)
      emit(run, fresh, 'serving', `version ${spec.version} on ${fresh.placement.offer.provider}`)
      await stopReplica(run, old, `replaced by version ${spec.version}`)
    }
    run.current = next
  } finally {
    run.updating = false
    await persist(run)
  }
}

/**
 * Brings the number of replicas (per region, or in total) to what `replicas` asks: new ones are placed and serve before
 * the call returns; surplus ones (the newest first) leave rotation and stop.
 */
async function scale(run: ServiceRun, replicas: ServiceSpec['replicas']): Promise<void> {
  if (run.updating || run.removed) throw new HearthError('HEARTH_ERR_SERVICE_STATE', `service ${run.name} is ${run.removed ? 'removed' : 'being updated'}`)
  const spec = parseServiceSpec({ ...run.current.spec, replicas })
  run.updating = true
  await settleHealing(run)
  try {
    const wanted = new Map<string | undefined, number>()
    for (const region of replicaSlots(spec)) wanted.set(region, (wanted.get(region) ?? 0) + 1)
    const live = [...run.replicas.values()].filter((replica) => replica.state !== 'stopped')
    // A replica counts for its own region's slot, or for "any region" when the spec asks for a total.
    const key = (replica: Replica): string | undefined => ('total' in spec.replicas ? undefined : replica.region)
    for (const replica of live.reverse()) {
      const left = wanted.get(key(replica)) ?? 0
      if (left > 0) wanted.set(key(replica), left - 1)
      else await stopReplica(run, replica, 'the service was scaled down')
    }
    run.current = { ...run.current, spec: { ...run.current.spec, replicas: spec.replicas } }
    for (const [region, count] of wanted) {
      for (let i = 0; i < count; i++) {
        const replica = await launch(run, region, run.current)
        run.replicas.set(replica.id, replica)
        emit(run, replica, 'serving', `scaled up on ${replica.placement.offer.provider}`)
      }
    }
  } finally {
    run.updating = false
  }
}

async function remove(run: ServiceRun): Promise<{ agreementId: string; paidWei: bigint }[]> {
  run.removed = true
  await settleHealing(run)
  await Promise.all([...run.replicas.values()].map((replica) => stopReplica(run, replica, 'the service was removed')))
  const paid: { agreementId: string; paidWei: bigint }[] = []
  for (const agreementId of run.usedAgreements) {
    const settlement = await run.init.accounts.account(agreementId).settle()
    paid.push({ agreementId, paidWei: settlement.paidWei })
  }
  await run.saving
  run.init.store.services.delete(run.name)
  run.forget()
  return paid
}

async function startService(init: ServicesInit, links: ReplicaLinks, first: ServicePackage, forget: () => void, saved?: SavedService): Promise<Service & { stopChecks(): void }> {
  const run: ServiceRun = { init, links, name: first.spec.name, current: first, replicas: new Map(), usedAgreements: new Set(), removed: false, updating: false, checking: false, saving: Promise.resolve(), forget }
  const timer = setInterval(() => {
    if (run.checking || run.removed) return
    run.checking = true
    void checkAll(run).finally(() => {
      run.checking = false
    })
  }, first.spec.health.intervalMs)
  timer.unref()
  if (saved !== undefined) takeUp(run, saved)
  // Placed one after another, so that two replicas of one region land on two providers.
  try {
    for (const region of saved === undefined ? replicaSlots(first.spec) : []) {
      const replica = await launch(run, region, first)
      run.replicas.set(replica.id, replica)
      emit(run, replica, 'serving', `on ${replica.placement.offer.provider}`)
    }
  } catch (error) {
    clearInterval(timer)
    await Promise.all([...run.replicas.values()].map((replica) => stopReplica(run, replica, 'the deploy failed')))
    for (const id of run.usedAgreements) await init.accounts.account(id).settle().catch(() => undefined)
    // Nothing of a failed deploy is taken up after a restart.
    run.removed = true
    await run.saving
    init.store.services.delete(run.name)
    throw error
  }
  await persist(run)
  return {
    name: run.name,
    stopChecks: () => clearInterval(timer),
    status: () => statusOf(run),
    routes: () => routesOf(run),
    logs: (replicaId, tailBytes = 64 * 1024) => logsOf(run, replicaId, tailBytes),
    update: (next, bytes) => update(run, next, bytes),
    scale: (replicas) => scale(run, replicas),
    spec: () => run.current.spec,
    route(replicaId) {
      const replica = run.replicas.get(replicaId)
      const activityId = replica?.activity?.id
      if (replica === undefined || activityId === undefined || replica.state !== 'serving') return undefined
      return { peerId: replica.placement.offer.peerId, multiaddrs: replica.placement.offer.multiaddrs, activityId }
    },
    async remove() {
      clearInterval(timer)
      return remove(run)
    },
    notice: (from, notice) => takeNotice(run, from, notice),
  }
}
