/**
 * The shapes the requestor node's local API answers with, as zod schemas: the OpenAPI document is made from them and
 * tests check real answers against that document. Wei amounts are decimal strings.
 */
import { z } from 'zod'

export const wei = z.string().regex(/^\d+$/).describe('an amount in wei, as a decimal string')
const count = z.number().int().nonnegative()
const hex = z.string().regex(/^0x[0-9a-fA-F]*$/)

export const replicaStatusSchema = z.object({
  id: z.string(),
  region: z.string().optional(),
  version: z.string(),
  provider: z.string(),
  agreementId: z.string(),
  activityId: z.string().optional(),
  state: z.enum(['starting', 'serving', 'down', 'stopped']),
  inRotation: z.boolean(),
  lastError: z.string().optional(),
  restarts: count,
})

export const serviceStatusSchema = z.object({ name: z.string(), version: z.string(), replicas: z.array(replicaStatusSchema), wanted: count })

export const nodeStatusSchema = z.looseObject({
  pid: z.number().int(),
  peerId: z.string(),
  address: hex,
  multiaddrs: z.array(z.string()),
  startedAtMs: z.number(),
  gateways: z.array(z.object({ service: z.string(), url: z.string() })),
  offers: count.describe('live offers in this node\'s book'),
  services: z.array(serviceStatusSchema),
})

const objectInfo = z.looseObject({ bucket: z.string(), key: z.string(), size: count, etag: z.string(), lastModifiedMs: z.number() })

export const storageResults = {
  'store-put': objectInfo.extend({ pieces: count }),
  'store-get': objectInfo.extend({ path: z.string(), bytes: count }),
  'store-ls': z.union([
    z.object({ buckets: z.array(z.object({ name: z.string(), createdAtMs: z.number() })) }),
    z.object({ bucket: z.string(), objects: z.array(objectInfo) }),
  ]),
  'store-rm': z.object({ removed: z.string() }),
  'store-status': z.object({
    code: z.object({ k: count, m: count }),
    holdings: z.array(z.object({ provider: z.string(), region: z.string().nullable(), agreementId: z.string(), bytes: count, live: z.boolean(), expiresAtSec: z.number() })),
    objects: z.array(
      z.object({
        bucket: z.string(),
        key: z.string(),
        bytes: count,
        k: count,
        n: count,
        pieces: z.array(
          z.object({
            piece: count,
            provider: z.string(),
            region: z.string().nullable(),
            audits: z.object({ passed: count, failed: count, lastMs: z.number(), lastError: z.string().nullable() }).nullable(),
          }),
        ),
      }),
    ),
  }),
  'store-s3': z.object({ url: z.string(), region: z.string(), accessKeyId: z.string(), secretAccessKey: z.string() }),
  'store-restore': z.object({ objects: count }),
  'store-repair': z.object({ audited: count, failed: count, lost: z.array(z.string()), rebuilt: count }),
} as const

export const offerViewSchema = z.object({
  offerId: hex,
  provider: hex.describe('the provider\'s address'),
  peerId: z.string(),
  region: z.string().nullable(),
  countryCode: z.string().nullable(),
  lat: z.number().nullable(),
  lon: z.number().nullable(),
  runtimes: z.array(z.string()),
  threads: z.number().nullable(),
  memoryGib: z.number().nullable(),
  diskGib: z.number().nullable(),
  cpuScore: z.number().nullable(),
  gpus: count,
  pricing: z.looseObject({ model: z.string() }),
  expiresAtMs: z.number(),
  latencyMs: z.number().nullable().describe('the round trip this node last measured to the provider; null: not measured'),
  reputation: z.object({ valid: count, invalid: count, failed: count, excluded: z.boolean() }).nullable().describe('this node\'s record of the provider\'s results'),
})

export const offersSchema = z.object({ total: count.describe('offers in the book before the filter'), offers: z.array(offerViewSchema) })

export const providersSchema = z.object({
  providers: z.array(
    z.object({
      provider: hex,
      peerId: z.string(),
      region: z.string().nullable(),
      lat: z.number().nullable(),
      lon: z.number().nullable(),
      latencyMs: z.number().nullable(),
      measuredAtMs: z.number().nullable(),
      connection: z.string().nullable(),
    }),
  ),
})

const voucherView = z.object({ cumulativeWei: wei, claimedTx: z.string().nullable(), receivedAtMs: z.number(), deliveredAtMs: z.number().nullable() })

export const moneySchema = z.object({
  requestor: hex,
  chainBlock: z.string().regex(/^\d+$/).describe('the block the chain was read at'),
  agreements: z.array(
    z.object({
      agreementId: z.string(),
      provider: z.string(),
      state: z.string(),
      jobName: z.string().nullable(),
      local: z.object({ depositedWei: wei, vouchers: z.array(voucherView), closed: z.boolean(), openTx: z.string().nullable() }).nullable(),
      chain: z
        .object({
          depositedWei: wei, paidWei: wei, refundedWei: wei, lockedWei: wei, closed: z.boolean(), openTx: z.string().nullable(),
          claimTxs: z.array(z.string()).describe('the provider\'s claims'), closeTx: z.string().nullable().describe('the release or refund that closed it'), balanced: z.boolean(),
        })
        .nullable()
        .describe('read from the chain: the escrow\'s events and state'),
      agrees: z.boolean().describe('the chain balances, and the newest voucher covers what was paid out'),
    }),
  ),
  totals: z.object({ depositedWei: wei, paidWei: wei, refundedWei: wei, lockedWei: wei }),
  balanced: z.boolean().describe('every escrow balances on chain (deposited = paid + refunded + locked) and the contract holds what they lock'),
  problems: z.array(z.string()),
})
