import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import type { AgreementOutcome } from '../requestor/job-types.ts'
import { recordProblems } from './report.ts'

const eth = (n: number): bigint => BigInt(n) * 10n ** 15n

/** An agreement's record as the requestor took it at settlement: 240 deposited, 101 signed, nothing claimed yet. */
function record(settled: boolean): Pick<AgreementOutcome, 'agreementId' | 'settled' | 'depositWei' | 'signedWei' | 'paidWei' | 'refundedWei' | 'lockedWei'> {
  return { agreementId: '0xab', settled, depositWei: eth(240), signedWei: eth(101), paidWei: 0n, refundedWei: 0n, lockedWei: eth(240) }
}

const chain = (paid: number, refunded = 0) => () => ({ depositedWei: eth(240), paidWei: eth(paid), refundedWei: eth(refunded), lockedWei: eth(240 - paid - refunded) })

describe('the requestor\'s records against the chain', () => {
  it('accepts a claim after the records were taken, by a provider that did not settle, up to what was signed', () => {
    assert.deepEqual(recordProblems({ agreements: [record(false)] }, chain(101)), [])
    assert.deepEqual(recordProblems({ agreements: [record(false)] }, chain(0)), [])
  })

  it('refuses a claim beyond what the requestor signed, and any claim after a settlement the records saw end', () => {
    assert.match(recordProblems({ agreements: [record(false)] }, chain(102)).join('\n'), /102000000000000000 wei paid.*101000000000000000 signed/)
    assert.match(recordProblems({ agreements: [record(true)] }, chain(101)).join('\n'), /records say paid 0 wei, the chain 101000000000000000/)
  })

  it('refuses a refund the records do not know of, settled or not', () => {
    assert.match(recordProblems({ agreements: [record(false)] }, chain(0, 10)).join('\n'), /records say refunded 0 wei/)
    assert.match(recordProblems({ agreements: [record(true)] }, chain(0, 10)).join('\n'), /records say refunded 0 wei/)
  })
})
