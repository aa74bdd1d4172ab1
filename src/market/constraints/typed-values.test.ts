import assert from 'node:assert/strict'
import { test } from 'node:test'
import {
  compareDateTimes, compareDecimals, compareStrings, compareVersions, matchesPattern, parseBoolean, parseDateTime,
  parseDecimal, parseNumber, parseVersion,
} from './typed-values.ts'

test('numbers read as Rust reads a decimal f64 literal, and anything else is NaN', () => {
  for (const [text, value] of [['4', 4], ['-4', -4], ['+4', 4], ['0.5', 0.5], ['.5', 0.5], ['5.', 5], ['1e3', 1000], ['1E-2', 0.01], ['1e+21', 1e21], ['007', 7]] as const) {
    assert.equal(parseNumber(text), value, text)
  }
  for (const text of ['', ' 4', '4 ', '0x10', '1ds23', 'NaN', 'inf', 'Infinity', '.', '+', '1e', '1_000', '4*']) {
    assert.ok(Number.isNaN(parseNumber(text)), JSON.stringify(text))
  }
})

test('booleans are exactly true or false, as Rust parses them', () => {
  assert.equal(parseBoolean('true'), true)
  assert.equal(parseBoolean('false'), false)
  for (const text of ['True', 'TRUE', '1', 'yes', ' true', '']) assert.equal(parseBoolean(text), undefined)
})

test('versions follow SemVer 2.0 precedence, ignoring build metadata', () => {
  // The precedence chain from semver.org, item 11.
  const chain = ['1.0.0-alpha', '1.0.0-alpha.1', '1.0.0-alpha.beta', '1.0.0-beta', '1.0.0-beta.2', '1.0.0-beta.11', '1.0.0-rc.1', '1.0.0', '1.0.1', '1.1.0', '1.10.0', '2.0.0']
  for (let i = 0; i < chain.length; i++) {
    for (let j = 0; j < chain.length; j++) {
      const c = compareVersions(parseVersion(chain[i]!)!, parseVersion(chain[j]!)!)
      assert.equal(Math.sign(c), Math.sign(i - j), `${chain[i]} vs ${chain[j]}`)
    }
  }
  assert.equal(compareVersions(parseVersion('1.0.0+build.1')!, parseVersion('1.0.0+build.2')!), 0)
  assert.equal(compareVersions(parseVersion('99999999999999999999.0.0')!, parseVersion('9999999999999999999.0.0')!), 1)
  for (const text of ['1.0', '1', 'v1.0.0', '01.0.0', '1.0.0-', '1.0.0-01', '1.0.0+', ' 1.0.0', 'dblah', '']) {
    assert.equal(parseVersion(text), undefined, JSON.stringify(text))
  }
})

test('decimals compare exactly, whatever their spelling', () => {
  const d = (text: string) => parseDecimal(text)!
  assert.equal(compareDecimals(d('1.0'), d('1')), 0)
  assert.equal(compareDecimals(d('0.1'), d('1e-1')), 0)
  assert.equal(compareDecimals(d('-0'), d('0.000')), 0)
  assert.equal(compareDecimals(d('10'), d('9.999999999999999999999')), 1)
  assert.equal(compareDecimals(d('-10'), d('-9')), -1)
  assert.equal(compareDecimals(d('0.30000000000000000001'), d('0.3')), 1)
  assert.equal(compareDecimals(d('123456789012345678901234567890'), d('123456789012345678901234567891')), -1)
  assert.equal(compareDecimals(d('-0.5'), d('0')), -1)
  assert.equal(compareDecimals(d('1e400'), d('9e399')), 1)
  for (const text of ['', 'abc', '1.2.3', '--1', '1e', '1e9999999999', ' 1']) assert.equal(parseDecimal(text), undefined, JSON.stringify(text))
})

test('date-times are RFC 3339 instants: offsets are applied, fractions compared to the nanosecond', () => {
  const t = (text: string) => parseDateTime(text)!
  assert.equal(compareDateTimes(t('1985-04-12T23:20:50.52Z'), t('1985-04-12T23:20:50.520Z')), 0)
  assert.equal(compareDateTimes(t('1985-04-12T23:20:30.52Z'), t('1985-04-12T23:20:50.52Z')), -1)
  assert.equal(compareDateTimes(t('1996-12-19T16:39:57-08:00'), t('1996-12-20T00:39:57Z')), 0)
  assert.equal(compareDateTimes(t('2024-01-01T00:00:00.000000001Z'), t('2024-01-01T00:00:00Z')), 1)
  assert.equal(t('1970-01-01T00:00:00Z').seconds, 0)
  assert.equal(t('2024-02-29T12:00:00Z').seconds, Date.UTC(2024, 1, 29, 12) / 1000)
  assert.equal(t('0001-01-01T00:00:00Z').seconds, -62135596800)
  assert.equal(t('2000-01-01 00:00:00z').seconds, Date.UTC(2000, 0, 1) / 1000)
  // chrono's RFC 3339 parser is strict: no bare dates, no missing offsets, no impossible days.
  for (const text of ['1985-04-13', '1985-04-12T23:20:50', '2023-02-29T00:00:00Z', '2024-13-01T00:00:00Z', '2024-01-01T24:00:00Z', '2024-01-01T00:00:00+25:00', 'now']) {
    assert.equal(parseDateTime(text), undefined, text)
  }
})

test('wildcard patterns match anywhere, anchor at both ends, and take nothing else as special', () => {
  assert.equal(matchesPattern(['Babs ', ''], 'Babs Jensen'), true)
  assert.equal(matchesPattern(['univ', 'of', 'mich', ''], 'university of michigan'), true)
  assert.equal(matchesPattern(['', 'a', ''], 'banana'), true)
  assert.equal(matchesPattern(['ab', 'ba'], 'aba'), false) // head and tail may not overlap
  assert.equal(matchesPattern(['a', 'b', 'c'], 'acb'), false)
  assert.equal(matchesPattern(['a.c'], 'abc'), false) // yagna built a regex here, so `.` matched anything
  assert.equal(matchesPattern(['', ''], ''), true)
  assert.equal(matchesPattern([''], ''), true)
  assert.equal(matchesPattern([''], 'x'), false)
})

test('strings order by code point, as Rust orders str', () => {
  assert.ok(compareStrings('a', 'b') < 0)
  assert.ok(compareStrings('ab', 'a') > 0)
  assert.equal(compareStrings('same', 'same'), 0)
  assert.ok(compareStrings('1.10.0', '1.5.0') < 0) // why `$v` exists
  // U+FF5E sorts below U+1F600 by code point, above it by UTF-16 unit.
  assert.ok(compareStrings('\uff5e', '\u{1f600}') < 0)
  assert.ok('\uff5e' > '\u{1f600}')
})
