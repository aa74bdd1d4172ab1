import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { seededRandom } from '../seeded-random.ts'
import { dispatch, type Attempt, type DispatchSlot, type Verdict } from './dispatch.ts'

/** Providers simulated by functions: what each returns for a task, after how long. The scheduler is what is tested. */
function slots(...names: string[]): DispatchSlot[] {
  return names.map((provider) => ({ provider, capacity: 1, retired: false }))
}

const right = (task: number): string => `right-${task}`
const sleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms)
    signal.addEventListener('abort', () => {
      clearTimeout(timer)
      reject(new Error('aborted'))
    })
  })


describe('dispatch: verification', () => {
  it('runs every task once on honest providers and spreads them', async () => {
    const ran: string[] = []
    const pool = slots('a', 'b', 'c')
    const outcome = await dispatch<string>({
      taskCount: 30,
      slots: pool,
      run: async (slot, task) => {
        ran.push(slot.provider)
        await new Promise((resolve) => setTimeout(resolve, 1))
        return { ok: true, result: right(task), key: right(task), elapsedMs: 1 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.size, 30)
    assert.equal(outcome.failed.size, 0)
    assert.equal(ran.length, 30)
    for (const name of ['a', 'b', 'c']) assert.ok(ran.includes(name), `${name} got work`)
    assert.deepEqual(outcome.figures, { attempts: 30, retries: 0, checks: 0, rejected: 0, stragglers: 0, failures: 0 })
  })

  it('adaptive replication: a wrong answer is caught by a check, outvoted and not counted valid', async () => {
    const verdicts: Verdict<string>[] = []
    const outcome = await dispatch<string>({
      taskCount: 20,
      slots: slots('honest-1', 'honest-2', 'liar'),
      checkProbability: () => 1,
      random: seededRandom(7),
      run: async (slot, task) => {
        await new Promise((resolve) => setTimeout(resolve, 1))
        const result = slot.provider === 'liar' ? `wrong-${task}` : right(task)
        return { ok: true, result, key: result, elapsedMs: 1 }
      },
      onVerdict: (verdict) => {
        verdicts.push(verdict)
      },
    })
    assert.equal(outcome.failed.size, 0)
    for (let task = 0; task < 20; task++) assert.equal(outcome.accepted.get(task), right(task))
    for (const verdict of verdicts) {
      assert.ok(verdict.checked)
      assert.ok(verdict.valid.length >= 2 && verdict.valid.every((v) => v.slot.provider !== 'liar'))
      assert.ok(verdict.invalid.every((v) => v.slot.provider === 'liar'))
    }
    const rejected = verdicts.reduce((sum, v) => sum + v.invalid.length, 0)
    assert.ok(rejected > 0)
    assert.equal(outcome.figures.rejected, rejected)
  })

  it('adaptive replication checks trusted providers rarely: extra runs follow the check probability', async () => {
    const outcome = await dispatch<string>({
      taskCount: 200,
      slots: slots('a', 'b'),
      checkProbability: () => 0.1,
      random: seededRandom(11),
      run: async (_slot, task) => ({ ok: true, result: right(task), key: right(task), elapsedMs: 1 }),
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.size, 200)
    // 10% of 200 with a fixed seed: between 5 and 40 checks is the plausible range
    assert.ok(outcome.figures.checks >= 5 && outcome.figures.checks <= 40, `checks ${outcome.figures.checks}`)
    assert.equal(outcome.figures.attempts, 200 + outcome.figures.checks)
  })

  it('fixed redundancy: 3 replicas, quorum 2; a task whose answers never agree fails', async () => {
    const verdicts: Verdict<string>[] = []
    const outcome = await dispatch<string>({
      taskCount: 3,
      slots: slots('a', 'b', 'c'),
      replicas: 3,
      run: async (slot, task) => {
        const result = task === 2 ? `${slot.provider}-${task}` : right(task)
        return { ok: true, result, key: result, elapsedMs: 1 }
      },
      onVerdict: (verdict) => {
        verdicts.push(verdict)
      },
    })
    assert.equal(outcome.accepted.get(0), right(0))
    assert.equal(outcome.accepted.get(1), right(1))
    assert.match(outcome.failed.get(2) ?? '', /disagreed/)
    assert.ok(verdicts.every((v) => v.valid.length >= 2))
  })
})

describe('dispatch: failures, stragglers and batches', () => {
  it('retries a failed task on another provider and retires a provider at fault', async () => {
    const failures: { task: number; provider: string; willRetry: boolean }[] = []
    const pool = slots('flaky', 'good')
    const outcome = await dispatch<string>({
      taskCount: 6,
      slots: pool,
      run: async (slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (slot.provider === 'flaky') return { ok: false, message: 'connection reset', taskAtFault: false, providerAtFault: true }
        return { ok: true, result: right(task), key: right(task), elapsedMs: 2 }
      },
      onVerdict: () => undefined,
      onAttemptFailed: (task, slot, _failure, willRetry) => failures.push({ task, provider: slot.provider, willRetry }),
    })
    assert.equal(outcome.accepted.size, 6)
    assert.ok(pool[0]!.retired)
    assert.equal(failures.length, 1)
    assert.deepEqual(failures[0], { task: failures[0]!.task, provider: 'flaky', willRetry: true })
    assert.equal(outcome.figures.retries, 1)
  })

  it('gives up on a task that breaks its own limits twice, with the reason', async () => {
    const outcome = await dispatch<string>({
      taskCount: 2,
      slots: slots('a', 'b'),
      run: async (_slot, task): Promise<Attempt<string>> =>
        task === 1 ? { ok: false, message: 'ran past its deadline', taskAtFault: true, providerAtFault: false } : { ok: true, result: right(task), key: right(task), elapsedMs: 1 },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.get(0), right(0))
    assert.equal(outcome.failed.get(1), 'ran past its deadline')
    assert.equal(outcome.figures.failures, 2)
  })

  it('runs a straggler again on an idle provider; the first answer wins and the slow run is aborted', async () => {
    let abortedSlow = false
    const outcome = await dispatch<string>({
      taskCount: 8,
      slots: slots('fast', 'stuck'),
      stragglerFactor: 3,
      stragglerMinMs: 20,
      run: async (slot, task, signal) => {
        if (slot.provider === 'stuck' && task === 1) {
          await sleep(30_000, signal).catch(() => {
            abortedSlow = true
          })
          return { ok: false, message: 'aborted', taskAtFault: false, providerAtFault: false }
        }
        await sleep(5, signal)
        return { ok: true, result: right(task), key: right(task), elapsedMs: 5 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.size, 8)
    assert.equal(outcome.figures.stragglers, 1)
    assert.ok(abortedSlow)
  })

  it('a provider that declines (no room) costs the task nothing: it runs elsewhere, however often that happens', async () => {
    const outcome = await dispatch<string>({
      taskCount: 10,
      slots: slots('full', 'free'),
      maxFailures: 1,
      run: async (slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (slot.provider === 'full') return { ok: false, message: 'no room', taskAtFault: false, providerAtFault: false, declined: true }
        return { ok: true, result: right(task), key: right(task), elapsedMs: 2 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.size, 10)
    assert.equal(outcome.failed.size, 0)
  })

  it('batches small tasks into one exchange per worker, and retries a lost batch elsewhere task by task', async () => {
    const batches: { provider: string; size: number }[] = []
    const outcome = await dispatch<string>({
      taskCount: 100,
      slots: slots('a', 'lossy'),
      batchSize: (_slot, median) => (median === Infinity ? 1 : 16),
      run: async (_slot, task) => ({ ok: true, result: right(task), key: right(task), elapsedMs: 1 }),
      runBatch: async (slot, indices): Promise<Attempt<string>[]> => {
        batches.push({ provider: slot.provider, size: indices.length })
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (slot.provider === 'lossy') throw new Error('stream reset')
        return indices.map((task) => ({ ok: true, result: right(task), key: right(task), elapsedMs: 1 }))
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.size, 100)
    for (let task = 0; task < 100; task++) assert.equal(outcome.accepted.get(task), right(task))
    assert.ok(batches.some((b) => b.size > 1), JSON.stringify(batches))
    assert.ok(batches.every((b) => b.size <= 16))
    // the lossy provider's batch failed whole, and it was retired after that one batch
    assert.equal(batches.filter((b) => b.provider === 'lossy').length, 1)
  })
})

describe('dispatch: churn, backoff and retirement', () => {
  it('churn: a provider that goes away is asked again after a backoff, and its absences cost the tasks nothing', async () => {
    // The only provider is down for its first six attempts (a restart), then serves. Three failures would end a task;
    // absences do not count among them.
    let attempts = 0
    const backoffs: number[] = []
    let lastAttemptAt = 0
    const outcome = await dispatch<string>({
      taskCount: 5,
      slots: slots('home'),
      maxFailures: 3,
      comeback: { firstMs: 10, maxMs: 40, giveUpMs: 60_000 },
      run: async (_slot, task): Promise<Attempt<string>> => {
        const now = performance.now()
        if (attempts > 0) backoffs.push(now - lastAttemptAt)
        lastAttemptAt = now
        if (++attempts <= 6) return { ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true }
        return { ok: true, result: right(task), key: right(task), elapsedMs: 1 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.failed.size, 0, [...outcome.failed.values()].join('; '))
    for (let task = 0; task < 5; task++) assert.equal(outcome.accepted.get(task), right(task))
    assert.equal(attempts, 11)
    // Each absence waited at least its backoff (10, 20, 40, 40, 40 ms) before the provider was asked again.
    for (const [i, least] of [10, 20, 40, 40, 40].entries()) assert.ok(backoffs[i]! >= least - 1, `wait ${i}: ${backoffs[i]} ms`)
  })

  it('churn: a provider away longer than the limit is retired; its tasks go to the others, or fail when none is left', async () => {
    const gone = (): Attempt<string> => ({ ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true })
    const pool = slots('gone', 'here')
    const shared = await dispatch<string>({
      taskCount: 10,
      slots: pool,
      comeback: { firstMs: 5, maxMs: 10, giveUpMs: 50 },
      run: async (slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 10))
        return slot.provider === 'gone' ? gone() : { ok: true, result: right(task), key: right(task), elapsedMs: 10 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(shared.accepted.size, 10)
    const alone = slots('gone')
    const lonely = await dispatch<string>({ taskCount: 3, slots: alone, comeback: { firstMs: 5, maxMs: 10, giveUpMs: 50 }, run: async () => gone(), onVerdict: () => undefined })
    assert.equal(lonely.failed.size, 3)
    assert.equal(alone[0]!.retired, true)
    assert.match([...lonely.failed.values()][0]!, /connection refused/)
  })

  it('churn: a task after which every provider vanishes is given up after a bounded number of absences', async () => {
    let killer = 0
    const outcome = await dispatch<string>({
      taskCount: 4,
      slots: slots('a', 'b'),
      comeback: { firstMs: 1, maxMs: 2, giveUpMs: 60_000, perTask: 4 },
      run: async (_slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 1))
        if (task !== 2) return { ok: true, result: right(task), key: right(task), elapsedMs: 1 }
        killer++
        return { ok: false, message: 'closed the stream without answering', taskAtFault: false, providerAtFault: false, unreachable: true }
      },
      onVerdict: () => undefined,
    })
    assert.deepEqual([...outcome.accepted.keys()].sort(), [0, 1, 3])
    assert.deepEqual([...outcome.failed.keys()], [2])
    assert.equal(killer, 4)
  })

  it('churn: a provider that declined a task (no room) runs it later, however often another comes back only to vanish again', async () => {
    // 'home' vanishes on every attempt and keeps coming back (a machine restarting); 'busy' is full at first. Once
    // 'busy' has room it must take the task: its decline was no try, and 'home' being away (neither present nor
    // having tried the task) must not keep it from the task until the task's allowance of absences is used up.
    let busyAsked = 0
    const outcome = await dispatch<string>({
      taskCount: 1,
      slots: slots('home', 'busy'),
      // 'home' is asked again every 20-40 ms; 'busy' may be offered the task again 5 ms after it declined.
      comeback: { firstMs: 20, maxMs: 40, giveUpMs: 60_000, perTask: 10 },
      declineWaitMs: 5,
      run: async (slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (slot.provider === 'home') return { ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true }
        if (++busyAsked === 1) return { ok: false, message: 'no room', taskAtFault: false, providerAtFault: false, declined: true }
        return { ok: true, result: right(task), key: right(task), elapsedMs: 2 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.failed.size, 0, [...outcome.failed.values()].join('; '))
    assert.equal(outcome.accepted.get(0), right(0))
    assert.equal(busyAsked, 2)
  })
})

describe('dispatch: churn, checks and recruitment', () => {
  it('churn: when the providers are gone, new ones are recruited mid-job and finish it', async () => {
    const gone = (): Attempt<string> => ({ ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true })
    const asked: number[] = []
    const ran = new Map<string, number>()
    const outcome = await dispatch<string>({
      taskCount: 20,
      slots: slots('a', 'b'),
      comeback: { firstMs: 50, maxMs: 100, giveUpMs: 60_000 },
      recruitEveryMs: 10,
      recruit: async (missing) => {
        asked.push(missing)
        return asked.length === 1 ? slots('c') : []
      },
      run: async (slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (slot.provider !== 'c') return gone()
        ran.set(slot.provider, (ran.get(slot.provider) ?? 0) + 1)
        return { ok: true, result: right(task), key: right(task), elapsedMs: 2 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.failed.size, 0, [...outcome.failed.values()].join('; '))
    assert.equal(outcome.accepted.size, 20)
    assert.equal(ran.get('c'), 20)
    // Asked for as many as were gone at that moment, at most two (the pool's size).
    assert.ok(asked[0]! >= 1 && asked.every((n) => n <= 2), JSON.stringify(asked))
  })

  it('churn: a result waiting for a check does not wait for a provider that is away; one back from away gets one task first', async () => {
    // Every result is to be checked, and the only other provider ('b') is away after its first attempt for good.
    const perAttempt: { provider: string; tasks: number }[] = []
    const outcome = await dispatch<string>({
      taskCount: 12,
      slots: [{ provider: 'a', capacity: 1, retired: false }, { provider: 'b', capacity: 3, retired: false }],
      checkProbability: () => 1,
      random: seededRandom(1),
      // 'b' is asked again every few ms while 'a' works (10 ms an exchange).
      comeback: { firstMs: 1, maxMs: 2, giveUpMs: 60_000, perTask: 1_000 },
      batchSize: () => 4,
      run: async (slot, task): Promise<Attempt<string>> => {
        perAttempt.push({ provider: slot.provider, tasks: 1 })
        await new Promise((resolve) => setTimeout(resolve, slot.provider === 'a' ? 10 : 2))
        if (slot.provider === 'b') return { ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true }
        return { ok: true, result: right(task), key: right(task), elapsedMs: 2 }
      },
      runBatch: async (slot, indices): Promise<Attempt<string>[]> => {
        perAttempt.push({ provider: slot.provider, tasks: indices.length })
        await new Promise((resolve) => setTimeout(resolve, slot.provider === 'a' ? 10 : 2))
        if (slot.provider === 'b') return indices.map(() => ({ ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true }))
        return indices.map((task) => ({ ok: true, result: right(task), key: right(task), elapsedMs: 2 }))
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.failed.size, 0, [...outcome.failed.values()].join('; '))
    assert.equal(outcome.accepted.size, 12)
    // After the first attempts of its three workers, 'b' was asked with one task at a time.
    const ofB = perAttempt.filter((a) => a.provider === 'b')
    assert.ok(ofB.length > 3 && ofB.slice(3).every((a) => a.tasks === 1), JSON.stringify(perAttempt))
  })

  it('churn: nobody is recruited while the pool is whole, and a recruitment still under way when the tasks settle is called off', async () => {
    let calls = 0
    const whole = await dispatch<string>({
      taskCount: 10,
      slots: slots('a', 'b'),
      recruit: async () => {
        calls++
        return []
      },
      run: async (_slot, task) => ({ ok: true, result: right(task), key: right(task), elapsedMs: 1 }),
      onVerdict: () => undefined,
    })
    assert.equal(whole.accepted.size, 10)
    assert.equal(calls, 0)

    // 'a' is away once; the recruitment it starts waits until called off, which happens when 'b' has done everything.
    let calledOff = false
    let first = true
    const outcome = await dispatch<string>({
      taskCount: 10,
      slots: slots('a', 'b'),
      comeback: { firstMs: 60_000, maxMs: 60_000, giveUpMs: 600_000 },
      recruit: (_missing, signal) =>
        new Promise((resolve) =>
          signal.addEventListener('abort', () => {
            calledOff = true
            resolve(slots('late'))
          }),
        ),
      run: async (slot, task): Promise<Attempt<string>> => {
        await new Promise((resolve) => setTimeout(resolve, 2))
        if (slot.provider === 'a' && first) {
          first = false
          return { ok: false, message: 'connection refused', taskAtFault: false, providerAtFault: false, unreachable: true }
        }
        return { ok: true, result: right(task), key: right(task), elapsedMs: 2 }
      },
      onVerdict: () => undefined,
    })
    assert.equal(outcome.accepted.size, 10)
    assert.ok(calledOff)
  })
})

describe('dispatch: resumed jobs and empty pools', () => {
  it('never runs tasks already done (a resumed job)', async () => {
    const ran: number[] = []
    const outcome = await dispatch<string>({
      taskCount: 5,
      slots: slots('a'),
      done: [0, 2, 4],
      run: async (_slot, task) => {
        ran.push(task)
        return { ok: true, result: right(task), key: right(task), elapsedMs: 1 }
      },
      onVerdict: () => undefined,
    })
    assert.deepEqual(ran.sort(), [1, 3])
    assert.deepEqual([...outcome.accepted.keys()].sort(), [1, 3])
  })

  it('fails every task at once when there is no provider', async () => {
    const outcome = await dispatch<string>({ taskCount: 2, slots: [], run: async () => assert.fail('nothing to run on'), onVerdict: () => undefined })
    assert.equal(outcome.failed.size, 2)
  })
})
