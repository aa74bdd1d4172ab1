/**
 * The value types a constraint compares besides plain strings: numbers, versions (SemVer 2.0), decimals and RFC 3339
 * date-times; plus `*` wildcards and code-point string order. Parsers return undefined (or NaN) for text that is not
 * of the type, and never throw: a value that does not parse is an answer (see compare.ts), not an error.
 */

// Decimal literal as Rust's f64 / BigDecimal parsers read it, minus `inf`/`nan`, which no market value needs.
const decimalLiteral = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/

/** The number a filter value denotes, or NaN (every comparison with NaN is false, which is the answer we want). */
export function parseNumber(text: string): number {
  const match = decimalLiteral.exec(text)
  if (match === null || (match[2] === '' && (match[3] === undefined || match[3] === ''))) return Number.NaN
  return Number(text)
}

export function parseBoolean(text: string): boolean | undefined {
  // Rust's `str::parse::<bool>` accepts exactly these two spellings; yagna compares booleans with it.
  return text === 'true' ? true : text === 'false' ? false : undefined
}

// ---- wildcards and strings ----

/** Whether `text` matches a pattern split at `*` (first segment anchors the start, last the end). No regex: no ReDoS. */
export function matchesPattern(pattern: readonly string[], text: string): boolean {
  const last = pattern.length - 1
  if (last === 0) return text === pattern[0]
  const head = pattern[0]!
  const tail = pattern[last]!
  if (text.length < head.length + tail.length || !text.startsWith(head) || !text.endsWith(tail)) return false
  let at = head.length
  const end = text.length - tail.length
  for (let i = 1; i < last; i++) {
    const segment = pattern[i]!
    const found = text.indexOf(segment, at)
    if (found < 0 || found + segment.length > end) return false
    at = found + segment.length
  }
  return true
}

/**
 * Orders strings by Unicode code point, as Rust's `str` comparison does (UTF-8 byte order). JavaScript's `<` orders
 * UTF-16 code units, which puts U+E000..U+FFFF above astral characters; the remap fixes the first differing unit.
 */
export function compareStrings(a: string, b: string): number {
  const n = Math.min(a.length, b.length)
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i)
    let y = b.charCodeAt(i)
    if (x === y) continue
    if (x >= 0xd800 || y >= 0xd800) {
      x = x >= 0xe000 ? x - 0x800 : x >= 0xd800 ? x + 0x2000 : x
      y = y >= 0xe000 ? y - 0x800 : y >= 0xd800 ? y + 0x2000 : y
    }
    return x < y ? -1 : 1
  }
  return a.length === b.length ? 0 : a.length < b.length ? -1 : 1
}

// ---- versions (SemVer 2.0.0, as yagna's `semver::Version::parse`) ----

export interface Version {
  /** major, minor, patch as digit strings: SemVer numbers have no upper bound, so they are compared as text. */
  core: [string, string, string]
  prerelease: string[]
}

// The regular expression semver.org publishes, with the build metadata captured only to be ignored.
const semverPattern = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][0-9a-zA-Z-]*))*))?(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$/

export function parseVersion(text: string): Version | undefined {
  const match = semverPattern.exec(text)
  if (match === null) return undefined
  return { core: [match[1]!, match[2]!, match[3]!], prerelease: match[4] === undefined ? [] : match[4].split('.') }
}

function compareDigits(a: string, b: string): number {
  if (a.length !== b.length) return a.length < b.length ? -1 : 1
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * SemVer precedence (spec item 11). Build metadata is ignored, for ordering and equality alike, as the spec says;
 * Rust's `semver` crate breaks ties on it, which only matters for two builds of one version.
 */
export function compareVersions(a: Version, b: Version): number {
  for (let i = 0; i < 3; i++) {
    const c = compareDigits(a.core[i]!, b.core[i]!)
    if (c !== 0) return c
  }
  const pa = a.prerelease
  const pb = b.prerelease
  if (pa.length === 0 || pb.length === 0) return pa.length === pb.length ? 0 : pa.length === 0 ? 1 : -1
  const n = Math.min(pa.length, pb.length)
  for (let i = 0; i < n; i++) {
    const x = pa[i]!
    const y = pb[i]!
    const xNumeric = /^\d+$/.test(x)
    const yNumeric = /^\d+$/.test(y)
    let c: number
    if (xNumeric && yNumeric) c = compareDigits(x, y)
    else if (xNumeric !== yNumeric) c = xNumeric ? -1 : 1
    else c = x < y ? -1 : x > y ? 1 : 0
    if (c !== 0) return c
  }
  return pa.length === pb.length ? 0 : pa.length < pb.length ? -1 : 1
}

// ---- decimals (`$d`: exact, like yagna's BigDecimal) ----

export interface Decimal {
  sign: -1 | 0 | 1
  /** Significant digits without leading or trailing zeros ('' for zero). */
  digits: string
  /** value = sign * digits * 10^exponent */
  exponent: number
}

export function parseDecimal(text: string): Decimal | undefined {
  const match = decimalLiteral.exec(text)
  if (match === null) return undefined
  const integer = match[2]!
  const fraction = match[3] ?? ''
  if (integer === '' && fraction === '') return undefined
  const exponentText = match[4] ?? '0'
  // Exponents past a billion are not prices or sizes; refusing them keeps the arithmetic exact in a double.
  if (exponentText.replace(/^[+-]?0*/, '').length > 9) return undefined
  let digits = (integer + fraction).replace(/^0+/, '')
  let exponent = Number(exponentText) - fraction.length
  const trimmed = digits.replace(/0+$/, '')
  exponent += digits.length - trimmed.length
  digits = trimmed
  if (digits === '') return { sign: 0, digits: '', exponent: 0 }
  return { sign: match[1] === '-' ? -1 : 1, digits, exponent }
}

export function compareDecimals(a: Decimal, b: Decimal): number {
  if (a.sign !== b.sign) return a.sign < b.sign ? -1 : 1
  if (a.sign === 0) return 0
  // Same sign: compare magnitudes by the position of the leading digit, then digit by digit.
  const magnitudeA = a.digits.length + a.exponent
  const magnitudeB = b.digits.length + b.exponent
  let c: number
  if (magnitudeA !== magnitudeB) {
    c = magnitudeA < magnitudeB ? -1 : 1
  } else {
    const width = Math.max(a.digits.length, b.digits.length)
    const x = a.digits.padEnd(width, '0')
    const y = b.digits.padEnd(width, '0')
    c = x < y ? -1 : x > y ? 1 : 0
  }
  return a.sign < 0 ? -c : c
}

// ---- date-times (RFC 3339, as chrono's `DateTime::parse_from_rfc3339`) ----

export interface DateTime {
  /** Seconds since the Unix epoch, UTC. */
  seconds: number
  /** 0..999_999_999; finer fractions are truncated, as chrono does. */
  nanos: number
}

const rfc3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/

export function parseDateTime(text: string): DateTime | undefined {
  const m = rfc3339.exec(text)
  if (m === null) return undefined
  const year = Number(m[1])
  const month = Number(m[2])
  const day = Number(m[3])
  const hour = Number(m[4])
  const minute = Number(m[5])
  // 60 is RFC 3339's leap second; like chrono we accept it and it reads as the next second's start.
  const second = Number(m[6])
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined
  if (hour > 23 || minute > 59 || second > 60) return undefined
  let offsetMinutes = 0
  if (m[8] === undefined) {
    const offsetHours = Number(m[10])
    const offsetMins = Number(m[11])
    if (offsetHours > 23 || offsetMins > 59) return undefined
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (offsetHours * 60 + offsetMins)
  }
  const nanos = m[7] === undefined ? 0 : Number(m[7].slice(0, 9).padEnd(9, '0'))
  const seconds = daysFromCivil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60
  return { seconds, nanos }
}

export function compareDateTimes(a: DateTime, b: DateTime): number {
  if (a.seconds !== b.seconds) return a.seconds < b.seconds ? -1 : 1
  return a.nanos === b.nanos ? 0 : a.nanos < b.nanos ? -1 : 1
}

function daysInMonth(year: number, month: number): number {
  if (month === 2) return (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0 ? 29 : 28
  return month === 4 || month === 6 || month === 9 || month === 11 ? 30 : 31
}

/** Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm); `Date.UTC` remaps years 0..99. */
function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year
  const era = Math.floor(y / 400)
  const yearOfEra = y - era * 400
  const dayOfYear = Math.floor((153 * (month + (month > 2 ? -3 : 9)) + 2) / 5) + day - 1
  const dayOfEra = yearOfEra * 365 + Math.floor(yearOfEra / 4) - Math.floor(yearOfEra / 100) + dayOfYear
  return era * 146097 + dayOfEra - 719468
}
