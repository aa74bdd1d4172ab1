/**
 * Progress on stderr, so stdout stays clean for `--json`. On a terminal one line redraws in place; in a log
 * (CI, a pipe) each notable step gets its own line. With `steps` only (as under `--json`) the notable steps are
 * written, the progress bar is not.
 */
import type { JobEvent } from '../requestor/events.ts'

export function createProgressPrinter(out: NodeJS.WritableStream, options: { stepsOnly: boolean }) {
  const tty = (out as NodeJS.WriteStream).isTTY === true
  const started = performance.now()
  let barShown = false
  const seconds = (): string => ((performance.now() - started) / 1000).toFixed(1).padStart(5) + ' s'
  const line = (text: string): void => {
    if (barShown) out.write('\n')
    barShown = false
    out.write(`[${seconds()}] ${text}\n`)
  }
  /** Tasks running per provider (checks and retries included), for "providers busy". */
  const running = new Map<string, number>()
  let spentWei = 0n
  let rejected = 0
  let batchStarted = performance.now()
  let batchDoneBefore = 0
  const busy = (): number => [...running.values()].filter((n) => n > 0).length
  /** Remaining time from this batch's own pace (tasks done before it, in a resumed job, do not count). */
  const eta = (done: number, total: number): string => {
    const doneHere = done - batchDoneBefore
    if (doneHere <= 0 || done >= total) return '--'
    const seconds = (((performance.now() - batchStarted) / doneHere) * (total - done)) / 1000
    return seconds < 60 ? `${seconds.toFixed(0)}s` : `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`
  }
  const bar = (done: number, total: number): void => {
    if (options.stepsOnly) return
    const width = 24
    const filled = Math.round((done / Math.max(1, total)) * width)
    const tokens = Number(spentWei) / 1e18
    const text =
      `[${seconds()}] [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} tasks` +
      `  ${busy()} providers busy  spent ${tokens.toFixed(6)} HTT  ETA ${eta(done, total)}${rejected > 0 ? `  ${rejected} rejected` : ''}`
    if (tty) {
      out.write(`\r${text}\x1b[K`)
      barShown = true
    } else if (done === total || done % Math.max(1, Math.ceil(total / 8)) === 0) {
      out.write(`${text}\n`)
    }
  }
  const change = (provider: string, by: number): void => {
    running.set(provider, Math.max(0, (running.get(provider) ?? 0) + by))
  }
  return {
    onEvent(event: JobEvent): void {
      switch (event.type) {
        case 'phase':
          return line(event.message)
        case 'offers':
          return line(`${event.count} matching offers`)
        case 'agreement':
          return line(`agreement ${event.agreementId.slice(0, 10)}… signed with ${event.provider}`)
        case 'agreement-failed':
          return line(`no agreement with ${event.provider}: ${event.message}`)
        case 'escrow-opened':
          return line(`escrow opened for ${event.agreementId.slice(0, 10)}… (tx ${event.txHash.slice(0, 10)}…)`)
        case 'job':
          return line(`job ${event.jobId}${event.resumedTasks > 0 ? ` resumed: ${event.resumedTasks} tasks were done before` : ''}`)
        case 'batch':
          batchStarted = performance.now()
          batchDoneBefore = event.done
          return
        case 'task-started':
          return change(event.provider, 1)
        case 'voucher-delivered':
          return
        case 'task-done':
          for (const provider of event.agreeing ?? [event.provider]) change(provider, -1)
          if (event.spentWei !== undefined) spentWei = BigInt(event.spentWei)
          return bar(event.done, event.total)
        case 'task-rejected':
          rejected++
          change(event.provider, -1)
          return line(`task ${event.taskIndex}: result of ${event.provider} rejected (${event.reason}); not paid`)
        case 'task-failed':
          change(event.provider, -1)
          return line(`task ${event.taskIndex} failed on ${event.provider}: ${event.message}${event.willRetry ? ' (retrying elsewhere)' : ''}`)
        case 'settled':
          return line(`${event.provider} claimed ${event.paidWei} wei, ${event.refundedWei} wei back to the requestor`)
      }
    },
    done(): void {
      if (barShown) out.write('\n')
      barShown = false
    },
  }
}
