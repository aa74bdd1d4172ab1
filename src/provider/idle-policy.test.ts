import assert from 'node:assert/strict'
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { createIdleMonitor, evaluateIdle, readOnMains, withinHours, type IdleRules, type IdleSources } from './idle-policy.ts'

/** An owner the test plays: load, power and the clock are whatever the test sets. */
function simulatedOwner(start = new Date(2026, 0, 5, 12, 0)) {
  const owner = { load: 0, mains: true, clockMs: start.getTime() }
  const sources: IdleSources = { ownerLoad: () => owner.load, onMains: () => owner.mains, now: () => new Date(owner.clockMs) }
  return { owner, sources }
}

const rules: IdleRules = { maxOwnerLoad: 0.25, requireMains: true, hours: [] }

test('lending hours: plain windows and windows that pass midnight, in local time', () => {
  const at = (h: number, m = 0): Date => new Date(2026, 0, 5, h, m)
  assert.equal(withinHours([], at(13)), true)
  assert.equal(withinHours(['09:00-17:00'], at(9)), true)
  assert.equal(withinHours(['09:00-17:00'], at(17)), false)
  assert.equal(withinHours(['22:00-07:00'], at(23, 30)), true)
  assert.equal(withinHours(['22:00-07:00'], at(6, 59)), true)
  assert.equal(withinHours(['22:00-07:00'], at(7)), false)
  assert.equal(withinHours(['22:00-07:00', '12:00-13:00'], at(12, 30)), true)
  assert.throws(() => withinHours(['25:00-07:00'], at(1)), /not a window/)
})

test('the verdict names why the machine is not lent: battery, hours, or the owner\'s load', () => {
  const { owner, sources } = simulatedOwner()
  assert.deepEqual(evaluateIdle(rules, sources), { lend: true, reason: undefined })
  owner.load = 0.6
  assert.match(evaluateIdle(rules, sources).reason ?? '', /owner load 0.60 is above 0.25/)
  owner.load = 0
  owner.mains = false
  assert.equal(evaluateIdle(rules, sources).reason, 'on battery')
  assert.equal(evaluateIdle({ ...rules, requireMains: false }, sources).lend, true)
  owner.mains = true
  assert.match(evaluateIdle({ ...rules, hours: ['22:00-07:00'] }, sources).reason ?? '', /outside lending hours/)
})

test('power: mains online, a battery without mains, and a desktop with no battery at all', async () => {
  const root = await mkdtemp(join(tmpdir(), 'hearth-power-'))
  after(() => rm(root, { recursive: true, force: true }))
  const supply = async (dir: string, name: string, type: string, online?: string): Promise<void> => {
    await mkdir(join(dir, name), { recursive: true })
    await writeFile(join(dir, name, 'type'), `${type}\n`)
    if (online !== undefined) await writeFile(join(dir, name, 'online'), `${online}\n`)
  }
  const laptop = join(root, 'laptop')
  await supply(laptop, 'BAT0', 'Battery')
  await supply(laptop, 'AC', 'Mains', '0')
  assert.equal(readOnMains(laptop), false)
  await writeFile(join(laptop, 'AC', 'online'), '1\n')
  assert.equal(readOnMains(laptop), true)
  const desktop = join(root, 'desktop')
  await mkdir(desktop)
  assert.equal(readOnMains(desktop), true)
  assert.equal(readOnMains(join(root, 'absent')), true)
  const upsOnly = join(root, 'ups')
  await supply(upsOnly, 'hidpp_battery_0', 'Battery')
  assert.equal(readOnMains(upsOnly), false)
})

test('the monitor pauses as soon as the owner is back and resumes only after the machine has been idle long enough', async () => {
  const { owner, sources } = simulatedOwner()
  const changes: { lending: boolean; reason: string | undefined }[] = []
  const monitor = createIdleMonitor({ rules, sources, resumeAfterMs: 60_000, onChange: (state) => void changes.push(state) })
  await monitor.check()
  assert.deepEqual(changes, [{ lending: true, reason: undefined }])
  // The owner starts working: the very next look pauses.
  owner.load = 0.9
  owner.clockMs += 1000
  await monitor.check()
  assert.equal(changes.length, 2)
  assert.equal(changes[1]!.lending, false)
  assert.match(changes[1]!.reason ?? '', /owner load/)
  // A quiet moment is not enough: 30 s idle, a blip, then 59 s idle.
  owner.load = 0.05
  for (let i = 0; i < 30; i++) {
    owner.clockMs += 1000
    await monitor.check()
  }
  owner.load = 0.5
  owner.clockMs += 1000
  await monitor.check()
  owner.load = 0.05
  for (let i = 0; i < 60; i++) {
    await monitor.check()
    owner.clockMs += 1000
  }
  assert.equal(changes.length, 2, 'still paused after 59 s of idleness')
  await monitor.check()
  assert.deepEqual(changes[2], { lending: true, reason: undefined })
  // Unplugging pauses at once too.
  owner.mains = false
  await monitor.check()
  assert.deepEqual(changes[3], { lending: false, reason: 'on battery' })
  assert.deepEqual(monitor.state(), { lending: false, reason: 'on battery' })
})

test('a source that cannot be read pauses lending rather than lend the machine blind', async () => {
  const { sources } = simulatedOwner()
  const changes: boolean[] = []
  const broken: IdleSources = { ...sources, ownerLoad: () => { throw new Error('no /proc/stat') } }
  const monitor = createIdleMonitor({ rules, sources: broken, onChange: ({ lending }) => void changes.push(lending) })
  await monitor.check()
  assert.deepEqual(changes, [false])
  assert.match(monitor.state().reason ?? '', /cannot read the owner's state: no \/proc\/stat/)
})
