/** Formatting of amounts, addresses, times and sizes for display. */

const weiPerHtt = 10n ** 18n
const shownDecimals = 6

/** A wei amount (decimal string) in HTT with up to 6 decimals, e.g. "1.5 HTT"; "<0.000001 HTT" for dust. */
export function formatHtt(wei: string | null | undefined): string {
  if (wei === null || wei === undefined || !/^-?\d+$/.test(wei)) return '—'
  const value = BigInt(wei)
  const negative = value < 0n
  const abs = negative ? -value : value
  const whole = abs / weiPerHtt
  const fraction = (abs % weiPerHtt).toString().padStart(18, '0').slice(0, shownDecimals).replace(/0+$/, '')
  if (whole === 0n && fraction === '' && abs > 0n) return `${negative ? '>-' : '<'}0.000001 HTT`
  const text = `${whole.toLocaleString('en-US')}${fraction === '' ? '' : `.${fraction}`}`
  return `${negative ? '−' : ''}${text} HTT`
}

/** A wei amount as a plain number of HTT, for charts (precision is not needed there). */
export function weiToNumber(wei: string): number {
  if (!/^-?\d+$/.test(wei)) return 0
  return Number(BigInt(wei) / 10n ** 12n) / 1e6
}

/** A number of HTT for a chart axis: up to 6 significant digits. */
export function formatHttNumber(value: number): string {
  return `${Number(value.toPrecision(6)).toLocaleString('en-US', { maximumFractionDigits: 6 })} HTT`
}

/** An address or hash cut to its ends, "0x1234…abcd". */
export function shorten(value: string, head = 6, tail = 4): string {
  return value.length <= head + tail + 1 ? value : `${value.slice(0, head)}…${value.slice(-tail)}`
}

/** A duration in seconds, e.g. "2 h 5 min", "45 s". */
export function formatDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return '—'
  const total = Math.max(0, Math.round(seconds))
  if (total < 60) return `${total} s`
  const minutes = Math.floor(total / 60)
  if (minutes < 60) return `${minutes} min ${total % 60} s`
  const hours = Math.floor(minutes / 60)
  if (hours < 48) return `${hours} h ${minutes % 60} min`
  return `${Math.floor(hours / 24)} d ${hours % 24} h`
}

/** A moment, as local date and time. */
export function formatTime(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return '—'
  return new Date(ms).toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'medium' })
}

/** A moment as the time of day, for chart axes; with the date when it is not today. */
export function formatClock(ms: number): string {
  const date = new Date(ms)
  const today = new Date().toDateString() === date.toDateString()
  return today ? date.toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' }) : date.toLocaleString(undefined, { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' })
}

/** A size in bytes, e.g. "1.2 MiB". */
export function formatBytes(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return '—'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`
}

/** A round trip in milliseconds, or "not measured". */
export function formatLatency(ms: number | null | undefined): string {
  return ms === null || ms === undefined ? 'not measured' : `${Math.round(ms)} ms`
}

/** A count with a noun, "1 task", "3 tasks". */
export function plural(count: number, noun: string, nouns = `${noun}s`): string {
  return `${count.toLocaleString('en-US')} ${count === 1 ? noun : nouns}`
}
