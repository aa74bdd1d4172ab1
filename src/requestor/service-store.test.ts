import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import type { Agreement } from '../market/agreement.ts'
import type { Offer } from '../market/offer.ts'
import { openStore } from '../store/store.ts'
import { loadServices, saveService } from './service-store.ts'
import { parseServiceSpec } from './service-spec.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-service-store-'))
after(() => rm(dir, { recursive: true, force: true }))

const agreement = { id: '0x' + 'ab'.repeat(32), terms: { expiresAtSec: 1 } } as unknown as Agreement
const offer = { provider: '0x' + '11'.repeat(20), peerId: 'peer', multiaddrs: [] } as unknown as Offer

test('a service saved with its packages comes back whole; a record that no longer reads is reported and left out', async () => {
  const store = openStore({ path: join(dir, 'node.db') })
  store.agreements.save({ id: agreement.id, role: 'requestor', requestor: '0x' + '22'.repeat(20), provider: offer.provider, state: 'approved', document: agreement, createdAtMs: 1, updatedAtMs: 1 })
  const v1 = { spec: parseServiceSpec({ name: 'site', version: 'v1', runtime: 'wasi' }), bytes: new Uint8Array([1, 2, 3]) }
  const v2 = { spec: parseServiceSpec({ name: 'site', version: 'v2', runtime: 'wasi' }), bytes: new Uint8Array([4, 5]) }
  const packages = join(dir, 'services')
  // Mid-update: one replica on each version.
  await saveService(store, packages, 'site', {
    current: v2,
    replicas: [
      { id: 'r1', region: 'eu', placement: { agreement, offer, region: 'eu' }, pkg: v1, activityId: 'a1', restarts: 2 },
      { id: 'r2', region: undefined, placement: { agreement, offer, region: undefined }, pkg: v2, activityId: undefined, restarts: 0 },
    ],
    usedAgreements: [agreement.id],
  })
  const files = await readdir(packages)
  assert.equal(files.length, 2, files.join(' '))
  assert.equal((await stat(join(packages, files[0]!))).mode & 0o777, 0o600)

  store.services.save('broken', { current: 'nowhere', packages: {}, replicas: [], usedAgreements: [] })
  const problems: string[] = []
  const [site, ...rest] = await loadServices(store, packages, (line) => problems.push(line))
  assert.equal(rest.length, 0)
  assert.match(problems.join('\n'), /service broken could not be taken up again: its package nowhere is not in its record/)
  assert.equal(site!.current.spec.version, 'v2')
  assert.deepEqual([...site!.current.bytes!], [4, 5])
  assert.deepEqual(site!.replicas.map((r) => [r.id, r.region, r.pkg.spec.version, [...r.pkg.bytes!], r.activityId, r.restarts, r.placement.agreement.id]), [
    ['r1', 'eu', 'v1', [1, 2, 3], 'a1', 2, agreement.id],
    ['r2', undefined, 'v2', [4, 5], undefined, 0, agreement.id],
  ])
  assert.deepEqual(site!.usedAgreements, [agreement.id])
  store.services.delete('site')
  store.services.delete('broken')
  assert.deepEqual(await loadServices(store, packages, () => undefined), [])
  store.close()
})
