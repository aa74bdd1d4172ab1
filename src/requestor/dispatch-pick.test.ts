import assert from 'node:assert/strict'
import { test } from 'node:test'
import { pick, pickBatch, type Picked } from './dispatch-pick.ts'
import { createScheduler } from './dispatch-state.ts'
import type { DispatchSlot } from './dispatch-types.ts'

function scheduler(taskCount: number, providers: string[]) {
  const slots: DispatchSlot[] = providers.map((provider) => ({ provider, capacity: 1, retired: false }))
  const s = createScheduler<string>({ taskCount, slots, run: async () => ({ ok: false, message: 'unused', taskAtFault: false, providerAtFault: false }), onVerdict: () => undefined }, () => undefined)
  return { s, slots }
}

const summary = (picked: Picked<string> | undefined): [number | undefined, string | undefined] => [picked?.task.index, picked?.reason]

test('pick: a task that needs a result again comes before new ones, and never goes back to the provider that answered it', () => {
  const { s, slots } = scheduler(3, ['a', 'b'])
  const [a, b] = slots as [DispatchSlot, DispatchSlot]
  const first = pick(s, a)
  assert.equal(first?.task.index, 0)
  assert.equal(first?.reason, 'first')
  // Task 0 answered by a, wanting a check by another provider.
  first!.task.tried.add('a')
  first!.task.answers.push({ slot: a, result: 'x', key: 'x' })
  first!.task.wanted = 2
  assert.deepEqual(summary(pick(s, b)), [0, 'check'])
  assert.deepEqual(summary(pick(s, a)), [1, 'first'])
})

test('pick: a straggler is run again only by a provider that has not tried it, once it runs past the limit', () => {
  const { s, slots } = scheduler(1, ['a', 'b'])
  const [a, b] = slots as [DispatchSlot, DispatchSlot]
  const only = pick(s, a)!
  only.task.tried.add('a')
  only.task.running.set(a, { startedAt: performance.now(), abort: new AbortController() })
  assert.equal(pick(s, b), undefined, 'no straggler before any accepted attempt gives a median')
  // A median of an hour: the run that just started is far inside the limit however slow this machine is.
  s.durations.push(3_600_000)
  s.durationCount = 1
  assert.equal(pick(s, b), undefined, 'a run that just started is no straggler')
  only.task.running.set(a, { startedAt: performance.now() - 4 * 3_600_000, abort: new AbortController() })
  assert.equal(pick(s, a), undefined, 'its own provider does not run it twice')
  assert.deepEqual(summary(pick(s, b)), [0, 'straggler'])
})

test('pickBatch: the next tasks for one exchange, each once, none left marked running', () => {
  const { s: many, slots: pool } = scheduler(4, ['c'])
  const c = pool[0]!
  const batch = pickBatch(many, c, pick(many, c)!, 3)
  assert.deepEqual(batch.map((p) => p.task.index), [0, 1, 2])
  assert.ok(batch.every((p) => p.task.running.size === 0), 'picking a batch leaves nothing marked running')
})
