/**
 * One replica of a service: an agreement with a provider that hosts services, an ExeScript activity under it whose
 * `serve` command runs the server, and the way in (replica-link.ts: a direct link or a `/hearth/service/connect/1` tunnel to the provider, which joins it
 * to the server's port inside the sandbox). Placing one negotiates with the best matching offer of its region; a
 * replica restarted in place gets a new activity under the same agreement.
 */
import { request as httpRequest } from 'node:http'
import type { Duplex } from 'node:stream'
import type { Address } from 'viem'
import { HearthError, toHearthError } from '../errors.ts'
import { terminalStates, type ActivityState, type ExeCommand } from '../exec/exescript.ts'
import type { NodeIdentity } from '../identity/node-identity.ts'
import { proposeTerms, type Agreement } from '../market/agreement.ts'
import type { Offer, SignedOffer } from '../market/offer.ts'
import type { OfferBook } from '../market/offer-book.ts'
import { costWei } from '../market/pricing.ts'
import type { Host } from '../net/host.ts'
import type { Store } from '../store/store.ts'
import { attachActivity, createActivity, type ActivityHandle } from './activity-client.ts'
import type { BlobServer } from './blob-server.ts'
import { negotiateMany, offerTarget } from './negotiator.ts'
import type { RequestorAccounts } from './requestor-account.ts'
import type { ServiceSpec } from './service-spec.ts'

export interface ReplicaDeps {
  host: Host
  identity: NodeIdentity
  store: Store
  accounts: RequestorAccounts
  blobs: BlobServer
  offerBook: OfferBook
}

/** What a replica deploys: the spec and, for docker and wasi, the package the provider fetches from this node. */
export interface ServicePackage {
  spec: ServiceSpec
  /** docker: the image archive; wasi: the module. */
  bytes?: Uint8Array
}

export interface Placement {
  agreement: Agreement
  offer: Offer
  region: string | undefined
}

/** The region an offer claims (`hearth.geo.region`), if any. */
export function offerRegion(offer: Offer): string | undefined {
  const region = offer.properties['hearth.geo.region']
  return typeof region === 'string' ? region : undefined
}

/** Where a replica may go: its region, providers to leave out, and (for a renewal) the one provider to ask. */
export interface PlaceWhere {
  region: string | undefined
  avoid: ReadonlySet<string>
  only?: string
}

/**
 * The terms of a replica's agreement besides price: one task per `escrowAheadSec` of the agreement (so the agreed
 * deposit, the cap of what it may cost, covers its whole life at the offer's prices) and two restarts in place; the
 * escrow kept one such task ahead of the work and topped up as it goes (market/escrow-ahead.ts); debit notes often
 * enough that the owner hears of the work well within that.
 */
export function replicaTasks(spec: ServiceSpec): { maxTasks: number; taskTimeoutMs: number; escrowAhead: true; debitNoteIntervalSec: number } {
  const aheadSec = Math.min(spec.agreementSec, spec.escrowAheadSec)
  return {
    maxTasks: Math.ceil(spec.agreementSec / aheadSec) + 2,
    taskTimeoutMs: aheadSec * 1000,
    escrowAhead: true,
    debitNoteIntervalSec: Math.min(60, Math.max(5, Math.floor(aheadSec / 6))),
  }
}

/** Offers that can host the service in `region`, cheapest first, leaving out the providers in `avoid`. */
export function hostingOffers(offerBook: OfferBook, spec: ServiceSpec, where: PlaceWhere): SignedOffer[] {
  const { region, avoid, only } = where
  const maxPerHour = spec.maxPricePerHourWei === undefined ? undefined : BigInt(spec.maxPricePerHourWei)
  const hourly = (offer: Offer): bigint => costWei(offer.pricing, { tasks: 0, cpuMs: 3_600_000, durationMs: 3_600_000 })
  return offerBook
    .list((offer) =>
      offer.properties['hearth.services.enabled'] === true &&
      [offer.properties['golem.runtime.name']].flat().includes(spec.runtime) &&
      (region === undefined || offerRegion(offer) === region) &&
      !avoid.has(offer.provider.toLowerCase()) &&
      (only === undefined || offer.provider.toLowerCase() === only.toLowerCase()) &&
      (maxPerHour === undefined || hourly(offer) <= maxPerHour))
    .sort((a, b) => (hourly(a.payload) < hourly(b.payload) ? -1 : hourly(a.payload) > hourly(b.payload) ? 1 : 0))
}

/** Negotiates an agreement for one replica in `region` and opens its escrow; throws when no provider there agrees. */
export async function placeReplica(deps: ReplicaDeps, spec: ServiceSpec, where: PlaceWhere, signal?: AbortSignal): Promise<Placement> {
  const { region, avoid } = where
  const candidates = hostingOffers(deps.offerBook, spec, where)
  if (candidates.length === 0) {
    throw new HearthError('HEARTH_ERR_SERVICE_UNAVAILABLE', `no offer hosts ${spec.runtime} services${region === undefined ? '' : ` in region ${region}`}${avoid.size > 0 ? ` beyond the ${avoid.size} providers already tried` : ''}`, {
      hint: 'wait for providers to offer services there, or change the replicas or constraints',
    })
  }
  const negotiated = await negotiateMany({ host: deps.host, identity: deps.identity, store: deps.store }, candidates.slice(0, 5), {
    need: 1,
    termsFor: (offer) => proposeTerms({ offer, requestor: deps.identity.address, runtime: spec.runtime, ...replicaTasks(spec), jobName: `service ${spec.name}`, durationSec: spec.agreementSec }),
    limits: { maxPerTaskWei: 10n ** 30n, minDurationSec: 60, maxDebitNoteIntervalSec: 3600, minPaymentTimeoutSec: 60 },
    ...(signal === undefined ? {} : { signal }),
  })
  const first = negotiated.agreements[0]
  if (first === undefined) {
    const why = negotiated.failures.map((failure) => `${failure.provider}: ${failure.message}`).join('; ')
    throw new HearthError('HEARTH_ERR_SERVICE_UNAVAILABLE', `no provider${region === undefined ? '' : ` in region ${region}`} agreed to host ${spec.name}${why === '' ? '' : `: ${why}`}`)
  }
  await deps.accounts.open([{ agreement: first.agreement, offer: first.offer }])
  return { agreement: first.agreement, offer: first.offer, region }
}

/** The batch that starts the server: deploy the package, start, serve on the spec's port (letting in its gateways). */
function startBatch(activity: ActivityHandle, pkg: ServicePackage, gateways: readonly string[]): ExeCommand[] {
  const { spec } = pkg
  const packageId = pkg.bytes === undefined ? undefined : activity.provide(pkg.bytes)
  const deploy = spec.runtime === 'docker'
    ? { imageId: spec.imageId!, ...(packageId === undefined ? {} : { packageId }) }
    : spec.runtime === 'native' ? { program: spec.program! } : { packageId: packageId! }
  return [{ deploy }, { start: {} }, { serve: { port: spec.port, args: spec.args, env: spec.env, gateways: [...gateways] } }]
}

/** Starts the server of a placed replica in a new activity; resolves once it listens. */
export async function startServer(deps: ReplicaDeps, placement: Placement, pkg: ServicePackage, gateways: readonly string[]): Promise<ActivityHandle> {
  const activity = await createActivity({ host: deps.host, identity: deps.identity, store: deps.store, accounts: deps.accounts, blobs: deps.blobs }, {
    id: placement.agreement.id,
    provider: placement.offer.provider as Address,
    target: offerTarget(placement.offer),
  })
  try {
    const outcome = await activity.exec(startBatch(activity, pkg, gateways)).result
    const failed = outcome.results.find((result) => !result.ok)
    if (failed !== undefined || outcome.results.length < 3) {
      throw new HearthError('HEARTH_ERR_SERVICE_UNAVAILABLE', `the replica on ${placement.offer.provider} did not start: ${failed?.error?.message ?? 'its batch ended early'}`, {
        ...(failed?.error?.hint === undefined ? {} : { hint: failed.error.hint }),
        details: { remoteCode: failed?.error?.code },
      })
    }
    return activity
  } catch (error) {
    await activity.terminate().catch(() => undefined)
    throw error
  }
}

/**
 * The server a replica's activity ran when this node last stopped, taken up again: undefined when its agreement or
 * activity has ended since (the replica is then brought back like any lost one).
 */
export function attachServer(deps: ReplicaDeps, placement: Placement, activityId: string | undefined): ActivityHandle | undefined {
  const record = activityId === undefined ? undefined : deps.store.activities.get('requestor', activityId)
  if (record === undefined || terminalStates.includes(record.state as ActivityState)) return undefined
  if (deps.store.agreements.state(placement.agreement.id) !== 'approved' || placement.agreement.terms.expiresAtSec * 1000 <= Date.now()) return undefined
  const agreement = { id: placement.agreement.id, provider: placement.offer.provider as Address, target: offerTarget(placement.offer) }
  return attachActivity(deps, agreement, { id: record.id, createdAtMs: record.createdAtMs, state: record.state as ActivityState })
}

/** One health check: GET `path` over a fresh tunnel, healthy on a 2xx or 3xx answer within `timeoutMs`. */
export async function checkHealth(connect: (signal: AbortSignal) => Promise<Duplex>, path: string, timeoutMs: number): Promise<{ ok: true } | { ok: false; reason: string }> {
  const signal = AbortSignal.timeout(timeoutMs)
  let socket: Duplex | undefined
  try {
    socket = await connect(signal)
    const opened = socket
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ method: 'GET', path, headers: { host: 'hearth-health', connection: 'close' }, createConnection: () => opened as never, signal }, (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
        res.on('error', reject)
      })
      req.on('error', reject)
      req.end()
    })
    return status >= 200 && status < 400 ? { ok: true } : { ok: false, reason: `GET ${path} answered ${status}` }
  } catch (error) {
    return { ok: false, reason: signal.aborted ? `GET ${path} took longer than ${timeoutMs} ms` : toHearthError(error).shortMessage }
  } finally {
    socket?.destroy()
  }
}
