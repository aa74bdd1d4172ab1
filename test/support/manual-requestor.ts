/**
 * The devnet's requestor node (its key, host, store and funded chain account) driven by hand, doing only what a test
 * chooses: it negotiates with a real provider, opens escrows on the real chain, sends real run-task requests for
 * `sleep` (a native program, so no package needs serving) and signs vouchers when it decides to. Hostile requestors
 * and payment tests are made of these steps.
 */
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { parseEther, type Hex } from 'viem'
import type { Devnet, DevnetProvider } from '../../src/devnet/devnet.ts'
import { isHearthError } from '../../src/errors.ts'
import { runTaskProtocol, type RunTaskRequest, type TaskResult } from '../../src/exec/task-protocols.ts'
import { proposeTerms, type Agreement } from '../../src/market/agreement.ts'
import { voucherProtocol } from '../../src/payment/payment-protocols.ts'
import { signVoucher, voucherToJson } from '../../src/payment/voucher.ts'
import { negotiateMany, offerTarget } from '../../src/requestor/negotiator.ts'

export interface ManualRequestor {
  /** An agreement for native `sleep` tasks, as this requestor proposes it (a counter-proposal is taken). */
  agree(overrides?: { debitNoteIntervalSec?: number; paymentTimeoutSec?: number; maxTasks?: number; escrowAhead?: boolean }): Promise<Agreement>
  /** The agreement's escrow, opened as an honest requestor opens it. */
  open(agreement: Agreement): Promise<void>
  /** One `sleep SECONDS` task under the agreement (default 0). */
  task(agreement: Agreement, seconds?: string): Promise<TaskResult>
  /** Tasks one after another until one is refused: how many ran, and the refusal. */
  runUntilRefused(agreement: Agreement, most?: number): Promise<{ ran: number; refusal: unknown }>
  /** A voucher for `cumulativeWei` under the agreement, sent to the provider. */
  pay(agreement: Agreement, cumulativeWei: bigint): Promise<void>
}

/** A remote refusal's code (the provider's HearthError, as the requestor receives it). */
export function remoteCode(error: unknown): string | undefined {
  return isHearthError(error) ? String(error.details?.remoteCode ?? error.code) : undefined
}

export function manualRequestor(devnet: Devnet, provider: () => DevnetProvider): ManualRequestor {
  const offer = () => provider().agent.currentOffer()!.payload
  const self: ManualRequestor = {
    async agree(overrides = {}) {
      const { requestor } = devnet
      const negotiated = await negotiateMany({ host: requestor.host, identity: requestor.identity, store: requestor.store }, [provider().agent.currentOffer()!], {
        need: 1,
        termsFor: (o) => proposeTerms({ offer: o, requestor: requestor.identity.address, runtime: 'native', maxTasks: overrides.maxTasks ?? 100, taskTimeoutMs: 30_000, jobName: 'by hand', ...overrides }),
        limits: { maxPerTaskWei: parseEther('1'), minDurationSec: 600, maxDebitNoteIntervalSec: 86_400, minPaymentTimeoutSec: 1 },
      })
      assert.equal(negotiated.agreements.length, 1, JSON.stringify(negotiated.failures))
      return negotiated.agreements[0]!.agreement
    },
    async open(agreement) {
      await devnet.requestor.agent.accounts.open([{ agreement, offer: offer() }])
    },
    task(agreement, seconds = '0') {
      const request: RunTaskRequest = {
        agreementId: agreement.id,
        jobId: randomUUID(),
        taskIndex: 0,
        activityId: randomUUID(),
        runtime: 'native',
        program: 'sleep',
        args: [seconds],
        env: {},
        inputs: [],
        outputs: [],
        timeoutMs: 30_000,
        maxMemoryBytes: 64 << 20,
        maxOutputBytes: 1 << 20,
      }
      return devnet.requestor.host.request(offerTarget(offer()), runTaskProtocol, request)
    },
    async runUntilRefused(agreement, most = 20) {
      for (let ran = 0; ran < most; ran++) {
        try {
          await self.task(agreement)
        } catch (error) {
          return { ran, refusal: error }
        }
      }
      return { ran: most, refusal: undefined }
    },
    async pay(agreement, cumulativeWei) {
      const { requestor } = devnet
      const voucher = await signVoucher({ privateKey: requestor.identity.privateKey, chainId: requestor.payment.client.chainId, escrowAddress: requestor.payment.escrowAddress, agreementId: agreement.id as Hex, cumulativeWei })
      await requestor.host.request(offerTarget(offer()), voucherProtocol, voucherToJson(voucher))
    },
  }
  return self
}
