/**
 * A job as its events tell it, for the dashboard's live view: every task's state and provider, its attempts, retries
 * and rejected results; progress, what has been spent, and an estimate of the time left from the pace so far.
 */
import type { JobEvent } from '../requestor/events.ts'

export type TaskState = 'waiting' | 'running' | 'done' | 'failed'

export interface TaskView {
  /** The batch it belongs to (a map-reduce has a map and a reduce batch). */
  batch: string
  index: number
  state: TaskState
  /** The provider of its latest run (or of its accepted result). */
  provider: string | null
  attempts: number
  retries: number
  rejected: number
  checked: boolean
  lastError: string | null
}

export interface JobProgress {
  phase: string | null
  total: number
  done: number
  failed: number
  running: number
  retries: number
  rejected: number
  spentWei: string
  /** Seconds left at the pace of the tasks done so far; null before the first is done. */
  etaSec: number | null
  agreements: { agreementId: string; provider: string; depositWei: string | null; openTx: string | null; paidWei: string | null; refundedWei: string | null; settleTx: string | null }[]
  offers: number | null
}

/** Folds a job's events, one at a time, into its tasks and progress. */
export function createJobView(startedAtMs: number) {
  const tasks = new Map<number, TaskView>()
  const batches = new Map<string, number>()
  let batch = 'tasks'
  const agreements = new Map<string, JobProgress['agreements'][number]>()
  let phase: string | null = null
  let total = 0
  let spentWei = '0'
  let offers: number | null = null
  let firstDoneAtMs: number | null = null

  // Task indices go on from batch to batch (a map-reduce's reduce tasks follow its map tasks), so one map holds all.
  const task = (index: number): TaskView => {
    let view = tasks.get(index)
    if (view === undefined) {
      view = { batch, index, state: 'waiting', provider: null, attempts: 0, retries: 0, rejected: 0, checked: false, lastError: null }
      tasks.set(index, view)
    }
    return view
  }

  function apply(event: JobEvent): void {
    switch (event.type) {
      case 'phase':
        phase = event.message
        break
      case 'offers':
        offers = event.count
        break
      case 'batch':
        batch = event.phase
        batches.set(batch, event.total)
        total = [...batches.values()].reduce((sum, n) => sum + n, 0)
        for (let i = 0; i < event.total; i++) task((event.firstTask ?? 0) + i)
        break
      case 'agreement':
        agreements.set(event.agreementId, { agreementId: event.agreementId, provider: event.provider, depositWei: null, openTx: null, paidWei: null, refundedWei: null, settleTx: null })
        break
      case 'escrow-opened': {
        const entry = agreements.get(event.agreementId)
        if (entry !== undefined) Object.assign(entry, { depositWei: event.depositWei, openTx: event.txHash })
        break
      }
      case 'settled': {
        const entry = agreements.get(event.agreementId)
        if (entry !== undefined) Object.assign(entry, { paidWei: event.paidWei, refundedWei: event.refundedWei, settleTx: event.txHash })
        break
      }
      case 'task-started': {
        const view = task(event.taskIndex)
        if (view.state !== 'done') view.state = 'running'
        if (event.reason !== 'check') {
          view.provider = event.provider
          view.attempts++
          if (event.reason === 'retry') view.retries++
        }
        break
      }
      case 'task-done': {
        const view = task(event.taskIndex)
        view.state = 'done'
        view.provider = event.provider
        view.checked ||= event.checked === true
        if (event.spentWei !== undefined) spentWei = event.spentWei
        firstDoneAtMs ??= Date.now()
        break
      }
      case 'task-rejected':
        task(event.taskIndex).rejected++
        break
      case 'task-failed': {
        const view = task(event.taskIndex)
        view.lastError = event.message
        if (!event.willRetry) view.state = 'failed'
        else if (view.state === 'running') view.state = 'waiting'
        break
      }
      default:
        break
    }
  }

  function progress(): JobProgress {
    const all = [...tasks.values()]
    const done = all.filter((t) => t.state === 'done').length
    const elapsedSec = (Date.now() - startedAtMs) / 1000
    const left = Math.max(0, total - done)
    return {
      phase,
      total,
      done,
      failed: all.filter((t) => t.state === 'failed').length,
      running: all.filter((t) => t.state === 'running').length,
      retries: all.reduce((sum, t) => sum + t.retries, 0),
      rejected: all.reduce((sum, t) => sum + t.rejected, 0),
      spentWei,
      etaSec: done === 0 || firstDoneAtMs === null ? null : Math.round((elapsedSec / done) * left),
      agreements: [...agreements.values()],
      offers,
    }
  }

  return { apply, progress, tasks: () => [...tasks.values()].sort((a, b) => a.index - b.index) }
}
