/**
 * The local API server on its own, as any node uses it: a kind's own commands (with JSON bodies) and record, its
 * refusals (no key, a foreign Host or Origin, an oversized body) in its own codes, and a caller finding it by the
 * record. The provider's commands over it are tested in src/provider/local-api.test.ts.
 */
import assert from 'node:assert/strict'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { HearthError, isHearthError } from '../errors.ts'
import { z } from 'zod'
import { apiKeyFile, callApi, command, readApiRecord, serveApi, type LocalApiKind } from './local-api-server.ts'

const root = await mkdtemp(join(tmpdir(), 'hearth-local-api-server-'))
after(() => rm(root, { recursive: true, force: true }))

const kind: LocalApiKind = {
  who: 'test node',
  statusFile: 'test-node.json',
  startCommand: 'hearth test start',
  codes: { notRunning: 'HEARTH_ERR_REQUESTOR_NOT_RUNNING', localApi: 'HEARTH_ERR_REQUESTOR_LOCAL_API' },
  realm: 'hearth-test',
}

/** A dashboard folder with a page and an asset, and a secret beside it that must never be served. */
async function assets(): Promise<string> {
  const dir = join(root, 'web-assets')
  await mkdir(join(dir, 'assets'), { recursive: true })
  await writeFile(join(dir, 'index.html'), '<!doctype html><title>dashboard</title>')
  await writeFile(join(dir, 'assets', 'app.js'), 'export {}')
  await writeFile(join(root, 'secret.txt'), 'not for the web')
  return dir
}

async function started(name: string) {
  const dir = join(root, name)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const api = await serveApi({
    dataDir: dir,
    kind,
    info: { label: name },
    limits: { maxBodyBytes: 1024 },
    web: { assetsDir: await assets() },
    commands: {
      echo: command({ summary: 'echo', body: z.record(z.string(), z.unknown()), result: z.unknown(), handle: async (body) => ({ command: 'echo', body }) }),
      'fail-state': command({ summary: 'fails', result: z.unknown(), handle: async () => Promise.reject(new HearthError('HEARTH_ERR_SERVICE_STATE', 'no such service', { hint: 'see the list' })) }),
      strict: command({ summary: 'takes a name', body: z.strictObject({ name: z.string().max(5) }), invalidCode: 'HEARTH_ERR_SERVICE_INVALID', result: z.object({ name: z.string() }), handle: async (body) => ({ name: body.name }) }),
      'big-number': command({ summary: 'a big number', result: z.object({ wei: z.string() }), handle: async () => ({ wei: 10n ** 30n }) }),
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

  it('checks a body against its command\'s schema before the handler, in the command\'s code, and documents it', async () => {
    const { api, key } = await started('schemas')
    const post = (body: unknown) => fetch(`${api.url}/v1/strict`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
    assert.deepEqual(await (await post({ name: 'site' })).json(), { ok: true, result: { name: 'site' } })
    for (const bad of [{ name: 'far too long' }, { name: 'ok', extra: 1 }, {}]) {
      const refused = await post(bad)
      assert.equal(refused.status, 400)
      const error = ((await refused.json()) as { error: { code: string; message: string } }).error
      assert.equal(error.code, 'HEARTH_ERR_SERVICE_INVALID')
      assert.match(error.message, /field /)
    }
    // A command without a body schema takes no body.
    const extra = await fetch(`${api.url}/v1/big-number`, { method: 'POST', headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' }, body: '{"x":1}' })
    assert.equal(extra.status, 400)
    // The document needs no key, lists every command, and describes the body it checks.
    const doc = (await (await fetch(`${api.url}/openapi.json`)).json()) as { openapi: string; paths: Record<string, { post: { requestBody?: { content: Record<string, { schema: { properties: Record<string, unknown>; additionalProperties: unknown } }> } } }> }
    assert.equal(doc.openapi, '3.1.0')
    assert.deepEqual(Object.keys(doc.paths).sort(), ['/v1/big-number', '/v1/echo', '/v1/fail-state', '/v1/strict'])
    const schema = doc.paths['/v1/strict']!.post.requestBody!.content['application/json']!.schema
    assert.deepEqual([Object.keys(schema.properties), schema.additionalProperties], [['name'], false])
  })

  it('serves the dashboard\'s files without the key, with a strict content policy, and nothing outside their folder', async () => {
    const { api } = await started('files')
    const page = await fetch(`${api.url}/`)
    assert.equal(page.status, 200)
    assert.match(await page.text(), /<title>dashboard/)
    assert.match(page.headers.get('content-security-policy') ?? '', /script-src 'self'/)
    assert.equal((await fetch(`${api.url}/assets/app.js`)).headers.get('content-type'), 'text/javascript; charset=utf-8')
    const port = Number(new URL(api.url).port)
    const raw = (path: string) =>
      new Promise<number>((done, fail) => {
        const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
          res.resume()
          done(res.statusCode ?? 0)
        })
        req.on('error', fail)
        req.end()
      })
    for (const path of ['/../secret.txt', '/assets/../../secret.txt', '/%2e%2e/secret.txt', '/assets/%2e%2e%2f%2e%2e%2fsecret.txt', '/assets']) assert.equal(await raw(path), 404, path)
    // A command is not read with GET.
    assert.equal(await raw('/v1/echo'), 405)
  })

  it('a caller with no node there gets the kind\'s "not running", naming how to start one', async () => {
    const dir = join(root, 'empty')
    await mkdir(dir, { recursive: true })
    await assert.rejects(callApi(dir, kind, 'echo'), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_REQUESTOR_NOT_RUNNING') && /the test node is not running \(no test-node\.json/.test(error.message) && /hearth test start/.test(error.hint ?? ''))
  })
})
