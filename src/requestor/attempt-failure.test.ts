/**
 * A failed attempt is put down to whoever caused it: the task (its own sandbox limits), the provider (no answer, a
 * bad result, failures in a row), or nobody (no room for now, away for a while, given up by this requestor). The
 * reputation book hears of every failure that is neither the task's nor a refusal for now.
 */
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { HearthError } from '../errors.ts'
import { openStore } from '../store/store.ts'
import { judgeFailure } from './attempt-failure.ts'
import { createReputationBook } from './reputation.ts'

const provider = '0xaaaa000000000000000000000000000000000001'
const dir = mkdtempSync(join(tmpdir(), 'hearth-attempt-failure-'))
after(() => rmSync(dir, { recursive: true, force: true }))
let stores = 0

function setup(options: { online?: boolean } = {}) {
  const store = openStore({ path: join(dir, `node-${stores++}.db`) })
  after(() => store.close())
  const reputation = createReputationBook(store)
  const slot = { provider, failures: 0 }
  const judge = { reputation, online: () => options.online ?? true }
  return { reputation, slot, judge }
}

const remote = (code: string, message = 'remote says no'): HearthError =>
  new HearthError('HEARTH_ERR_NET_REMOTE', message, { details: { remoteCode: code, remoteMessage: message } })
const live = (): AbortSignal => new AbortController().signal

test('a task that broke its own sandbox limits is the task\'s fault, with the sandbox\'s message, and not held against the provider', async () => {
  const { reputation, slot, judge } = setup()
  const verdict = await judgeFailure(judge, slot, remote('HEARTH_ERR_EXEC_TIMEOUT', 'ran past 1000 ms'), live())
  assert.deepEqual(verdict, { ok: false, message: 'ran past 1000 ms', taskAtFault: true, providerAtFault: false })
  assert.equal(reputation.get(provider), undefined)
  assert.equal(slot.failures, 0)
})

test('an attempt given up by the requestor is nobody\'s fault', async () => {
  const { reputation, slot, judge } = setup()
  const verdict = await judgeFailure(judge, slot, new HearthError('HEARTH_ERR_NET_TIMEOUT', 'no answer'), AbortSignal.abort())
  assert.deepEqual(verdict, { ok: false, message: 'no answer', taskAtFault: false, providerAtFault: false })
  assert.equal(reputation.get(provider), undefined)
})

test('a provider with no room for now declines without blame; one too small for the job is retired', async () => {
  const busy = setup()
  assert.deepEqual(await judgeFailure(busy.judge, busy.slot, remote('HEARTH_ERR_PROVIDER_BUSY'), live()), { ok: false, message: 'remote says no', taskAtFault: false, providerAtFault: false, declined: true })
  assert.equal(busy.reputation.get(provider), undefined)
  const small = setup()
  assert.deepEqual(await judgeFailure(small.judge, small.slot, remote('HEARTH_ERR_PROVIDER_TOO_SMALL'), live()), { ok: false, message: 'remote says no', taskAtFault: false, providerAtFault: true, declined: true })
  assert.equal(small.reputation.get(provider), undefined)
})

test('an unreachable provider is away, not at fault, while this node runs; with this node stopped it is an ordinary failure', async () => {
  const online = setup()
  const verdict = await judgeFailure(online.judge, online.slot, new HearthError('HEARTH_ERR_NET_DIAL', 'cannot dial'), live())
  assert.deepEqual(verdict, { ok: false, message: 'cannot dial', taskAtFault: false, providerAtFault: false, unreachable: true })
  assert.equal(online.reputation.get(provider)?.failed, 1)
  const offline = setup({ online: false })
  const first = await judgeFailure(offline.judge, offline.slot, new HearthError('HEARTH_ERR_NET_DIAL', 'cannot dial'), live())
  assert.equal(first.unreachable, undefined)
  assert.equal(first.providerAtFault, false)
  const second = await judgeFailure(offline.judge, offline.slot, new HearthError('HEARTH_ERR_NET_DIAL', 'cannot dial'), live())
  assert.equal(second.providerAtFault, true, 'two failures in a row retire the provider')
})

test('no answer at all and a result that fails its own checks are the provider\'s fault at once', async () => {
  const silent = setup()
  const timedOut = await judgeFailure(silent.judge, silent.slot, new HearthError('HEARTH_ERR_NET_TIMEOUT', 'no answer'), live())
  assert.deepEqual(timedOut, { ok: false, message: 'no answer', taskAtFault: false, providerAtFault: true })
  assert.equal(silent.reputation.get(provider)?.timeouts, 1)
  for (const code of ['HEARTH_ERR_SIGNATURE_INVALID', 'HEARTH_ERR_EXEC_RESULT_INVALID', 'HEARTH_ERR_PAYMENT_METERING_REFUSED'] as const) {
    const forged = setup()
    const refused = await judgeFailure(forged.judge, forged.slot, new HearthError(code, 'result refused'), live())
    assert.equal(refused.providerAtFault, true, code)
    assert.equal(forged.reputation.get(provider)?.failed, 1, code)
  }
})

test('a refusal for now from the provider declines without blame, whichever the code; other refusals count once', async () => {
  for (const code of ['HEARTH_ERR_NET_BUSY', 'HEARTH_ERR_PAYMENT_UNPAID']) {
    const full = setup()
    assert.deepEqual(await judgeFailure(full.judge, full.slot, remote(code), live()), { ok: false, message: 'remote says no', taskAtFault: false, providerAtFault: false, declined: true }, code)
    assert.equal(full.reputation.get(provider), undefined, code)
  }
  for (const code of ['HEARTH_ERR_PAYMENT_OVERDUE', 'HEARTH_ERR_MARKET_AGREEMENT_REJECTED', 'HEARTH_ERR_CONFIG_INVALID']) {
    const refusing = setup()
    assert.deepEqual(await judgeFailure(refusing.judge, refusing.slot, remote(code), live()), { ok: false, message: 'remote says no', taskAtFault: false, providerAtFault: false }, code)
    assert.equal(refusing.reputation.get(provider)?.failed, 1, code)
  }
})

test('every sandbox verdict from the provider is the task\'s fault', async () => {
  for (const code of ['HEARTH_ERR_EXEC_MEMORY', 'HEARTH_ERR_EXEC_OUTPUT_TOO_LARGE', 'HEARTH_ERR_EXEC_FAILED', 'HEARTH_ERR_EXEC_PACKAGE_INVALID', 'HEARTH_ERR_EXEC_ENV_NOT_ALLOWED']) {
    const { slot, judge } = setup()
    const verdict = await judgeFailure(judge, slot, remote(code), live())
    assert.equal(verdict.taskAtFault, true, code)
    assert.equal(verdict.providerAtFault, false, code)
  }
})
