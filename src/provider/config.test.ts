import assert from 'node:assert/strict'
import { test } from 'node:test'
import { isHearthError } from '../errors.ts'
import {
  checkShare,
  defaultShare,
  maxShare,
  parseConfigText,
  pricingFromConfig,
  pricingToConfig,
  renderConfigFile,
  resolveProviderConfig,
  stripJsonComments,
} from './config.ts'

const machine = { threads: 8, memoryGib: 16, freeDiskGib: 100 }
const minimal = { resources: { threads: 2, memoryGib: 4, diskGib: 10 }, pricing: { model: 'per-task', perTaskHtt: '0.001' } }

function configError(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    assert.ok(isHearthError(error), String(error))
    assert.equal(error.code, 'HEARTH_ERR_CONFIG_INVALID')
    return error.message
  }
  assert.fail('expected a config error')
}

test('comments and trailing commas are stripped, strings with // inside are kept', () => {
  const text = '// top\n{ "a": "http://x//y", /* block\n */ "b": [1, 2,], // end\n}'
  assert.deepEqual(JSON.parse(stripJsonComments(text)), { a: 'http://x//y', b: [1, 2] })
  assert.match(configError(() => parseConfigText('{ "a": ', 'x.jsonc')), /x.jsonc is not valid JSON/)
})

test('file, then environment, then flags: the later source wins, and defaults fill the rest', () => {
  const config = resolveProviderConfig({
    file: minimal,
    env: { HEARTH_PROVIDER_THREADS: '3', HEARTH_PROVIDER_HOURS: '22:00-07:00, 12:00-13:00', HEARTH_PROVIDER_IDLE: 'false' },
    flags: { threads: '4', allow: ['0x' + 'ab'.repeat(20)] },
  })
  assert.equal(config.resources.threads, 4)
  assert.deepEqual(config.idle.hours, ['22:00-07:00', '12:00-13:00'])
  assert.equal(config.idle.enabled, false)
  assert.equal(config.idle.maxOwnerLoad, 0.25)
  assert.deepEqual(config.admission.allowedRequestors, ['0x' + 'ab'.repeat(20)])
  assert.equal(config.admission.maxConcurrentAgreements, 16)
  // A model chosen by flag drops the file's per-task price.
  const linear = resolveProviderConfig({ file: minimal, flags: { pricingModel: 'linear', startHtt: '0', perCpuHourHtt: '0.036', perHourHtt: '0' } })
  assert.deepEqual(pricingFromConfig(linear.pricing), { model: 'linear', startWei: '0', perCpuSecWei: '10000000000000', perDurationSecWei: '0' })
  assert.deepEqual(pricingToConfig(pricingFromConfig(linear.pricing)), { model: 'linear', startHtt: '0', perCpuHourHtt: '0.036', perHourHtt: '0' })
})

test('errors name the field, where the value came from, and what was expected', () => {
  assert.match(configError(() => resolveProviderConfig({ file: minimal, env: { HEARTH_PROVIDER_THREADS: 'many' } })), /resources.threads \(from the environment\): expected a number, got "many"/)
  assert.match(configError(() => resolveProviderConfig({ file: minimal, flags: { threads: '1.5' } })), /resources.threads \(from the flag\): expected a whole number of threads, got 1.5/)
  assert.match(configError(() => resolveProviderConfig({ file: minimal, flags: { hours: ['9-17'] } })), /idle.hours.0 \(from the flag\): expected a local-time window like "22:00-07:00", got "9-17"/)
  assert.match(configError(() => resolveProviderConfig({ file: { ...minimal, pricing: { model: 'per-task', perTaskHtt: 'cheap' } } })), /pricing.perTaskHtt \(from the config file\): expected a token amount/)
  assert.match(configError(() => resolveProviderConfig({ file: { ...minimal, colour: 'blue' } })), /provider config \(root\): Unrecognized key: "colour"/)
  assert.match(configError(() => resolveProviderConfig({ file: minimal, flags: { deny: ['bob'] } })), /admission.deniedRequestors.0.*expected a 0x-prefixed 20-byte address/)
  assert.match(configError(() => resolveProviderConfig({ file: minimal, env: { HEARTH_PROVIDER_REQUIRE_MAINS: 'maybe' } })), /idle.requireMains \(from the environment\): expected true or false/)
  assert.match(configError(() => resolveProviderConfig({ file: { resources: minimal.resources } })), /pricing/)
})

test('the owner always keeps a thread, a quarter of the memory and some disk', () => {
  assert.deepEqual(maxShare(machine), { threads: 7, memoryGib: 12, diskGib: 98 })
  assert.deepEqual(defaultShare(machine), { threads: 4, memoryGib: 8, diskGib: 10 })
  checkShare({ threads: 7, memoryGib: 12, diskGib: 98 }, machine)
  assert.match(configError(() => checkShare({ threads: 8, memoryGib: 4, diskGib: 1 }, machine)), /resources.threads: 8 threads would leave the owner none of this machine's 8; lend at most 7/)
  assert.match(configError(() => checkShare({ threads: 2, memoryGib: 15, diskGib: 1 }, machine)), /resources.memoryGib: .*lend at most 12/)
  assert.match(configError(() => checkShare({ threads: 2, memoryGib: 4, diskGib: 99 }, machine)), /resources.diskGib/)
  assert.match(configError(() => checkShare({ threads: 1, memoryGib: 1, diskGib: 1 }, { threads: 1, memoryGib: 4, freeDiskGib: 10 })), /one-thread machine cannot be lent/)
})

test('the written config file has comments and reads back as the same configuration', () => {
  const config = resolveProviderConfig({ file: minimal, flags: { country: 'DE', hours: ['22:00-07:00'], deployment: '/tmp/deployment.json' } })
  const text = renderConfigFile(config, { machine, breakEven: '0.0005 HTT per task' })
  assert.match(text, /^\/\/ Hearth provider configuration/)
  assert.ok(text.split('\n').filter((l) => l.trim().startsWith('//')).length >= 20)
  assert.deepEqual(resolveProviderConfig({ file: parseConfigText(text, 'provider.jsonc') }), config)
})
