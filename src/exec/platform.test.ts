import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import { detectPlatform, platformEmulateVariable } from './platform.ts'

test('Linux is linux; other systems are generic, named by what Node calls them', () => {
  assert.deepEqual(detectPlatform({}, 'linux'), { kind: 'linux', name: 'linux', emulated: false })
  assert.deepEqual(detectPlatform({}, 'darwin'), { kind: 'generic', name: 'darwin', emulated: false })
  assert.deepEqual(detectPlatform({ [platformEmulateVariable]: '' }, 'win32'), { kind: 'generic', name: 'win32', emulated: false })
})

test('HEARTH_PLATFORM_EMULATE=generic makes Linux generic; an unknown value is refused, naming the variable', () => {
  assert.deepEqual(detectPlatform({ [platformEmulateVariable]: 'generic' }, 'linux'), { kind: 'generic', name: 'generic', emulated: true })
  assert.throws(
    () => detectPlatform({ [platformEmulateVariable]: 'macos' }, 'linux'),
    (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && error.shortMessage === 'HEARTH_PLATFORM_EMULATE=macos: expected "generic" or nothing',
  )
})
