/**
 * Admission for large task frames (tasks, task batches, vouchers, settlements), decided on the length prefix before
 * the body is read: only a requestor holding an approved agreement with this provider whose escrow is open may make
 * it buffer one. Peer ids cost nothing; a funded escrow does. Answers are kept for a few seconds, so a flood of frames
 * costs one chain read per agreement.
 */
import { HearthError } from '../errors.ts'
import type { Agreement } from '../market/agreement.ts'
import type { AdmitContext } from '../net/inbound-guard.ts'
import type { Store } from '../store/store.ts'
import type { Lending } from './lending.ts'
import type { ProviderAccounts } from './provider-account.ts'

export interface FrameAdmissionInit {
  store: Store
  accounts: ProviderAccounts
  lending: Lending
}

/** The `admit` hook for the host's large-frame protocols: resolves to let the frame in, throws to refuse it. */
export type FrameAdmission = (context: AdmitContext) => Promise<void>

export function createFrameAdmission(init: FrameAdmissionInit): FrameAdmission {
  const { store, accounts, lending } = init
  const admitted = new Map<string, { ok: boolean; atMs: number }>()
  return async function admitTaskFrame({ remoteAddress }: AdmitContext): Promise<void> {
    lending.ensureLending()
    const nowMs = Date.now()
    const known = admitted.get(remoteAddress.toLowerCase())
    if (known !== undefined && nowMs - known.atMs < 5_000) {
      if (known.ok) return
    } else {
      let ok = false
      for (const record of store.agreements.list({ state: 'approved' })) {
        if (record.role !== 'provider' || record.requestor.toLowerCase() !== remoteAddress.toLowerCase()) continue
        if ((record.document as Agreement).terms.expiresAtSec * 1000 <= nowMs) continue
        if (await accounts.account(record.id, remoteAddress).backed()) {
          ok = true
          break
        }
      }
      if (admitted.size > 4096) admitted.clear()
      admitted.set(remoteAddress.toLowerCase(), { ok, atMs: nowMs })
      if (ok) return
    }
    throw new HearthError('HEARTH_ERR_MARKET_AGREEMENT_UNKNOWN', 'this provider takes large task frames only from a requestor holding an approved agreement with it whose escrow is open', {
      hint: 'negotiate an agreement and open its escrow before sending tasks',
    })
  }
}
