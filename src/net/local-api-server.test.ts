/**
 * The local API server on its own, as any node uses it: a kind's own commands (with JSON bodies) and record, its
 * refusals (no key, a foreign Host or Origin, an oversized body) in its own codes, and a caller finding it by the
 * record. The provider's commands over it are tested in src/provider/local-api.test.ts.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { HearthError, isHearthError } from '../errors.ts'
import { apiKeyFile, callApi, readApiRecord, serveApi, type LocalApiKind } from './local-api-server.ts'

const root = await mkdtemp(join(tmpdir(), 'hearth-local-api-server-'))
after(() => rm(root, { recursive: true, force: true }))

const kind: LocalApiKind & { commands: readonly ('echo' | 'fail-state' | 'big-number')[] } = {
  who: 'test node',
  statusFile: 'test-node.json',
  commands: ['echo', 'fail-state', 'big-number'],
  startCommand: 'hearth test start',
  codes: { notRunning: 'HEARTH_ERR_REQUESTOR_NOT_RUNNING', localApi: 'HEARTH_ERR_REQUESTOR_LOCAL_API' },
  realm: 'hearth-test',
}

async function started(name: string) {
  const dir = join(root, name)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const api = await serveApi({
    dataDir: dir,
    kind,
    info: { label: name },
    limits: { maxBodyBytes: 1024 },
    handle: async (command, body) => {
      if (command === 'fail-state') throw new HearthError('HEARTH_ERR_SERVICE_STATE', 'no such service', { hint: 'see the list' })
      if (command === 'big-number') return { wei: 10n ** 30n }
      return { command, body }
    },
  })
  after(() => api.close())
  const key = (await readFile(join(dir, apiKeyFile), 'utf8')).trim()
  return { dir, api, key }
}

describe('the local API server', () => {
  it('records itself in the kind\'s status file (0600) and answers a kind\'s commands with their JSON bodies', async () => {
    const { dir, api } = await started('echo')
    const record = await readApiRecord<{ pid: number; url: string; label: string }>(dir, kind)
    assert.deepEqual(record, { label: 'echo', url: api.url, pid: process.pid })
    assert.equal((await stat(join(dir, kind.statusFile))).mode & 0o777, 0o600)
    assert.deepEqual(await callApi(dir, kind, 'echo', { name: 'site', replicas: { total: 2 } }), { command: 'echo', body: { name: 'site', replicas: { total: 2 } } })
    assert.deepEqual(await callApi(dir, kind, 'echo'), { command: 'echo', body: {} })
    // Big integers go out as decimal strings.
    assert.deepEqual(await callApi(dir, kind, 'big-number'), { wei: (10n ** 30n).toString() })
  })

  it('passes a command\'s own error to the caller with its code and hint', async () => {
    const { dir } = await started('failing')
    await assert.rejects(callApi(dir, kind, 'fail-state'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_SERVICE_STATE') && error.shortMessage === 'no such service' && error.hint === 'see the list')
  })

  it('refuses a missing key in the kind\'s code, a foreign Host or Origin, an unknown command and an oversized body', async () => {
    const { api, key } = await started('refusals')
    const post = (path: string, headers: Record<string, string>, body?: string) => fetch(`${api.url}${path}`, { method: 'POST', headers, ...(body === undefined ? {} : { body }) })
    const noKey = await post('/v1/echo', {})
    assert.equal(noKey.status, 401)
    assert.match(noKey.headers.get('www-authenticate') ?? '', /realm="hearth-test"/)
    assert.equal(((await noKey.json()) as { error: { code: string } }).error.code, 'HEARTH_ERR_REQUESTOR_NOT_RUNNING')
    const auth = { authorization: `Bearer ${key}` }
    const foreignOrigin = await post('/v1/echo', { ...auth, origin: 'http://evil.example' })
    assert.equal(foreignOrigin.status, 403)
    const unknown = await post('/v1/stop', auth)
    assert.equal(unknown.status, 404)
    assert.match(((await unknown.json()) as { error: { hint: string } }).error.hint, /POST \/v1\/fail-state/)
    const big = await post('/v1/echo', { ...auth, 'content-type': 'application/json' }, JSON.stringify({ pad: 'x'.repeat(2048) }))
    assert.equal(big.status, 413)
    const fine = await post('/v1/echo', { ...auth, 'content-type': 'application/json' }, '{"a":1}')
    assert.equal(fine.status, 200)
  })

  it('a caller with no node there gets the kind\'s "not running", naming how to start one', async () => {
    const dir = join(root, 'empty')
    await mkdir(dir, { recursive: true })
    await assert.rejects(callApi(dir, kind, 'echo'), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_REQUESTOR_NOT_RUNNING') && /the test node is not running \(no test-node\.json/.test(error.message) && /hearth test start/.test(error.hint ?? ''))
  })
})
