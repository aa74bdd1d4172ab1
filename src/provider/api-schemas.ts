/**
 * The shapes the provider's local API answers with, as zod schemas: the OpenAPI document is made from them, and tests
 * check real answers against that document. Loose objects where a part is open (offer properties, runtime details);
 * every figure a dashboard reads is named. Wei amounts are decimal strings.
 */
import { z } from 'zod'
import { providerConfigSchema } from './config.ts'

export const wei = z.string().regex(/^\d+$/).describe('an amount in wei, as a decimal string')
const signedWei = z.string().regex(/^-?\d+$/)
const count = z.number().int().nonnegative()

const claimView = z.object({
  state: z.enum(['pending', 'sent', 'confirmed', 'failed']),
  cumulativeWei: wei,
  release: z.boolean(),
  txHash: z.string().nullable(),
  blockNumber: z.number().int().nullable(),
  attempts: count,
  lastError: z.string().nullable(),
  nextAttemptAtMs: z.number().nullable(),
  final: z.boolean(),
  updatedAtMs: z.number(),
})

export const agreementEarningsSchema = z.object({
  agreementId: z.string(),
  requestor: z.string(),
  state: z.string(),
  usage: z.looseObject({ tasks: count, cpuMs: z.number().nonnegative() }),
  billedWei: wei,
  vouchedWei: wei,
  claimedWei: wei,
  confirmingWei: wei,
  unclaimedWei: wei,
  lastClaimTx: z.string().nullable(),
  exposure: z.object({ unpaidWei: wei, unpaidTasks: count, runningTasks: count }),
  unpaidNotes: count,
  claim: claimView.nullable(),
})

export const earningsTotalsSchema = z.object({
  agreements: count,
  tasks: count,
  cpuMs: z.number().nonnegative(),
  billedWei: wei,
  revenueWei: wei,
  claimedWei: wei,
  confirmingWei: wei,
  unclaimedWei: wei,
  owedWei: wei,
  exposureWei: wei,
  failedClaims: count,
  confirmingClaims: count,
  estimatedCostWei: wei.nullable(),
  netWei: signedWei.nullable(),
})

export const earningsSchema = z.object({ agreements: z.array(agreementEarningsSchema), totals: earningsTotalsSchema })

export const earningsHistorySchema = z.object({
  points: z.array(z.object({ atMs: z.number(), revenueWei: wei, claimedWei: wei })).describe('cumulative revenue (vouchers received) and confirmed claims over time, oldest first'),
})

export const providerStatusSchema = z.looseObject({
  running: z.literal(true),
  pid: z.number().int(),
  dataDir: z.string(),
  peerId: z.string(),
  address: z.string().regex(/^0x[0-9a-fA-F]{40}$/),
  multiaddrs: z.array(z.string()),
  network: z.object({
    reachability: z.looseObject({ kind: z.string(), addresses: z.array(z.string()), reason: z.string() }),
    connections: z.array(z.looseObject({ peerId: z.string(), kind: z.string(), remoteAddr: z.string() })),
  }),
  startedAtMs: z.number(),
  uptimeSec: z.number().nonnegative(),
  lending: z.object({ active: z.boolean(), reason: z.string().optional() }).describe('whether the machine is lent now, and why not'),
  offer: z.looseObject({
    runtimes: z.array(z.string()),
    unavailable: z.array(z.string()),
    threads: z.number(),
    memoryGib: z.number(),
    diskGib: z.number(),
    location: z.looseObject({}),
    pricingWei: z.looseObject({ model: z.string() }),
  }),
  tasks: z.looseObject({}),
  stats: z.object({ tasksRun: count, tasksFailed: count, agreements: count, wrongResults: count }),
  activeAgreements: count,
  profitability: z.object({
    currency: z.string(),
    costPerCpuHourWei: wei,
    revenuePerCpuHourWei: wei,
    coverage: z.number().describe('revenue per CPU hour over cost per CPU hour; below 1 the provider lends at a loss'),
    breakEven: z.object({ perTaskWei: wei, perCpuSecWei: wei }),
  }),
  earnings: earningsTotalsSchema,
  agreements: z.array(agreementEarningsSchema),
  warnings: z.array(z.string()),
})

export const providerConfigResultSchema = providerConfigSchema
