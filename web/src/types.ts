/**
 * The shapes of the local API's answers that the dashboard reads, as the nodes' zod schemas describe them
 * (src/requestor/api-schemas.ts, src/api/job-schemas.ts, src/provider/api-schemas.ts). Wei amounts are decimal strings.
 */

export type Wei = string

export interface ReplicaStatus {
  id: string
  region?: string
  version: string
  provider: string
  agreementId: string
  activityId?: string
  state: 'starting' | 'serving' | 'down' | 'stopped'
  inRotation: boolean
  lastError?: string
  restarts: number
}

export interface ServiceStatus {
  name: string
  version: string
  replicas: ReplicaStatus[]
  wanted: number
}

export interface NodeStatus {
  address: string
  peerId: string
}

export interface ProviderLocation {
  provider: string
  peerId: string
  region: string | null
  lat: number | null
  lon: number | null
  latencyMs: number | null
  measuredAtMs: number | null
  connection: string | null
}

export interface Providers {
  providers: ProviderLocation[]
}

export interface Pricing {
  model: string
  [field: string]: unknown
}

export interface OfferView {
  offerId: string
  provider: string
  peerId: string
  region: string | null
  countryCode: string | null
  lat: number | null
  lon: number | null
  runtimes: string[]
  threads: number | null
  memoryGib: number | null
  diskGib: number | null
  cpuScore: number | null
  gpus: number
  pricing: Pricing
  expiresAtMs: number
  latencyMs: number | null
  reputation: { valid: number; invalid: number; failed: number; excluded: boolean } | null
}

export interface Offers {
  total: number
  offers: OfferView[]
}

export interface VoucherView {
  cumulativeWei: Wei
  claimedTx: string | null
  receivedAtMs: number
  deliveredAtMs: number | null
}

export interface MoneyAgreement {
  agreementId: string
  provider: string
  state: string
  jobName: string | null
  local: { depositedWei: Wei; vouchers: VoucherView[]; closed: boolean; openTx: string | null } | null
  chain: { depositedWei: Wei; paidWei: Wei; refundedWei: Wei; lockedWei: Wei; closed: boolean; openTx: string | null; claimTxs: string[]; closeTx: string | null; balanced: boolean } | null
  agrees: boolean
}

export interface Money {
  requestor: string
  chainBlock: string
  agreements: MoneyAgreement[]
  totals: { depositedWei: Wei; paidWei: Wei; refundedWei: Wei; lockedWei: Wei }
  balanced: boolean
  problems: string[]
}

export type JobState = 'queued' | 'running' | 'finished' | 'failed' | 'cancelled'

export interface JobAgreement {
  agreementId: string
  provider: string
  depositWei: Wei | null
  openTx: string | null
  paidWei: Wei | null
  refundedWei: Wei | null
  settleTx: string | null
}

export interface JobProgress {
  phase: string | null
  total: number
  done: number
  failed: number
  running: number
  retries: number
  rejected: number
  spentWei: Wei
  etaSec: number | null
  agreements: JobAgreement[]
  offers: number | null
}

export interface JobSummary {
  id: string
  name: string
  kind: string
  state: JobState
  submittedAtMs: number
  startedAtMs: number | null
  finishedAtMs: number | null
  engineJobId: string | null
  error: string | null
  progress: JobProgress
}

export interface JobTask {
  batch: string
  index: number
  state: 'waiting' | 'running' | 'done' | 'failed'
  provider: string | null
  attempts: number
  retries: number
  rejected: number
  checked: boolean
  lastError: string | null
}

export interface JobReport {
  jobId: string
  tasks: { total: number; succeeded: number }
  settlement: {
    payments: { depositedWei: Wei; paidWei: Wei; refundedWei: Wei }
    audit: { balanced: boolean; problems?: unknown }
  } | null
}

export interface JobDetail extends JobSummary {
  tasks: JobTask[]
  events: Array<{ type: string; [field: string]: unknown }>
  report: JobReport | null
}

export interface JobList {
  jobs: JobSummary[]
}

export interface JobSubmitted {
  id: string
  name: string
  kind: string
  state: JobState
}

export interface JobOutputs {
  files: Array<{ path: string; bytes: number }>
}

export interface JobOutput {
  path: string
  bytes: number
  base64: string
}

/** What the feed says about a job: its state and progress, and the event that changed it. */
export interface JobFeedData {
  id: string
  state: JobState
  progress: JobProgress
  event?: { type: string; [field: string]: unknown }
  error?: string | null
}

export interface StoreStatus {
  code: { k: number; m: number }
  holdings: Array<{ provider: string; region: string | null; agreementId: string; bytes: number; live: boolean; expiresAtSec: number }>
  objects: Array<{
    bucket: string
    key: string
    bytes: number
    k: number
    n: number
    pieces: Array<{
      piece: number
      provider: string
      region: string | null
      audits: { passed: number; failed: number; lastMs: number; lastError: string | null } | null
    }>
  }>
}

export interface ClaimView {
  state: 'pending' | 'sent' | 'confirmed' | 'failed'
  cumulativeWei: Wei
  txHash: string | null
  attempts: number
  lastError: string | null
  final: boolean
}

export interface AgreementEarnings {
  agreementId: string
  requestor: string
  state: string
  usage: { tasks: number; cpuMs: number }
  billedWei: Wei
  vouchedWei: Wei
  claimedWei: Wei
  confirmingWei: Wei
  unclaimedWei: Wei
  lastClaimTx: string | null
  exposure: { unpaidWei: Wei; unpaidTasks: number; runningTasks: number }
  unpaidNotes: number
  claim: ClaimView | null
}

export interface EarningsTotals {
  agreements: number
  tasks: number
  cpuMs: number
  billedWei: Wei
  revenueWei: Wei
  claimedWei: Wei
  confirmingWei: Wei
  unclaimedWei: Wei
  owedWei: Wei
  exposureWei: Wei
  failedClaims: number
  confirmingClaims: number
  estimatedCostWei: Wei | null
  netWei: string | null
}

export interface Earnings {
  agreements: AgreementEarnings[]
  totals: EarningsTotals
}

export interface EarningsHistory {
  points: Array<{ atMs: number; revenueWei: Wei; claimedWei: Wei }>
}

export interface ProviderStatus {
  address: string
  peerId: string
  uptimeSec: number
  network: {
    reachability: { kind: string; addresses: string[]; reason: string }
    connections: Array<{ peerId: string; kind: string; remoteAddr: string }>
  }
  lending: { active: boolean; reason?: string }
  offer: {
    runtimes: string[]
    unavailable: string[]
    threads: number
    memoryGib: number
    diskGib: number
    location: { countryCode?: string; lat?: number; lon?: number; region?: string }
    pricingWei: Pricing
  }
  tasks: { tasks?: number; childTasks?: number; memoryBytes?: number; diskBytes?: number }
  stats: { tasksRun: number; tasksFailed: number; agreements: number; wrongResults: number }
  activeAgreements: number
  profitability: {
    currency: string
    costPerCpuHourWei: Wei
    revenuePerCpuHourWei: Wei
    coverage: number
    breakEven: { perTaskWei: Wei; perCpuSecWei: Wei }
  }
  earnings: EarningsTotals
  warnings: string[]
}

/** Any JSON value, for the provider's configuration. */
export type Json = string | number | boolean | null | Json[] | { [key: string]: Json }
