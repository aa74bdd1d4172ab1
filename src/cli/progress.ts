/**
 * Progress on stderr, so stdout stays clean for `--json`. On a terminal one line redraws in place; in a log
 * (CI, a pipe) each notable step gets its own line.
 */
import type { JobEvent } from '../requestor/events.ts'

export function createProgressPrinter(out: NodeJS.WritableStream, options: { quiet: boolean }) {
  const tty = (out as NodeJS.WriteStream).isTTY === true
  const started = performance.now()
  let barShown = false
  const seconds = (): string => ((performance.now() - started) / 1000).toFixed(1).padStart(5) + ' s'
  const line = (text: string): void => {
    if (options.quiet) return
    if (barShown) out.write('\n')
    barShown = false
    out.write(`[${seconds()}] ${text}\n`)
  }
  const bar = (done: number, total: number, provider: string): void => {
    if (options.quiet) return
    const width = 30
    const filled = Math.round((done / total) * width)
    const text = `[${seconds()}] tasks [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total}  last: ${provider.slice(0, 10)}`
    if (tty) {
      out.write(`\r${text}`)
      barShown = true
    } else if (done === total || done % Math.max(1, Math.ceil(total / 8)) === 0) {
      out.write(`${text}\n`)
    }
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
        case 'task-started':
        case 'voucher-delivered':
          return
        case 'task-done':
          return bar(event.done, event.total, event.provider)
        case 'task-failed':
          return line(`task ${event.taskIndex} failed on ${event.provider}: ${event.message}${event.willRetry ? ' (retrying elsewhere)' : ''}`)
        case 'settled':
          return line(`${event.provider} claimed ${event.paidWei} wei, ${event.refundedWei} wei back to the requestor`)
      }
    },
    done(): void {
      if (barShown && !options.quiet) out.write('\n')
      barShown = false
    },
  }
}
