import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { request } from 'node:http'
import { connect } from 'node:net'
import { networkInterfaces, tmpdir } from 'node:os'
import { join } from 'node:path'
import { z } from 'zod'
import { command, type CommandTable } from '../net/local-api-server.ts'
import { after, describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { apiKeyFile, callLocalApi, readApiInfo, serveLocalApi, statusFile, type LocalApiServer } from './local-api.ts'

const root = await mkdtemp(join(tmpdir(), 'hearth-local-api-'))
after(() => rm(root, { recursive: true, force: true }))

const info = { peerId: 'peer', address: '0x0000000000000000000000000000000000000001', multiaddrs: [], startedAtMs: 0 }
/** A table of the provider's command names, each answered by `answer` (which says which it was). */
function tableOf(answer: (name: string) => Promise<unknown>): CommandTable {
  return Object.fromEntries(['status', 'stop', 'pause', 'resume'].map((name) => [name, command({ summary: name, result: z.unknown(), handle: () => answer(name) })]))
}
const handle = tableOf(async (name) => ({ answered: name }))

async function dataDir(name: string): Promise<string> {
  const dir = join(root, name)
  await mkdir(dir, { recursive: true, mode: 0o700 })
  return dir
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: { ok: boolean; result?: unknown; error?: { code: string; message: string; hint?: string } }
}

/** One raw HTTP request, with whatever Host, Origin and Authorization the test (or attacker) chooses. */
function send(url: string, init: { method?: string; path?: string; headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  const { port } = new URL(url)
  return new Promise((resolveAnswer, reject) => {
    const req = request(
      { host: '127.0.0.1', port, method: init.method ?? 'POST', path: init.path ?? '/v1/status', setHost: false, headers: { host: `127.0.0.1:${port}`, ...init.headers } },
      (res) => {
        let text = ''
        res.setEncoding('utf8')
        res.on('data', (chunk: string) => (text += chunk))
        res.on('end', () => resolveAnswer({ status: res.statusCode!, headers: res.headers, body: JSON.parse(text) as Answer['body'] }))
      },
    )
    req.on('error', reject)
    req.end(init.body)
  })
}

async function keyOf(dir: string): Promise<string> {
  return (await readFile(join(dir, apiKeyFile), 'utf8')).trim()
}

/** Starts the API on a fresh data directory; closed after the test file. */
async function started(name: string, limits: Parameters<typeof serveLocalApi>[0]['limits'] = {}): Promise<{ dir: string; api: LocalApiServer; auth: Record<string, string> }> {
  const dir = await dataDir(name)
  const api = await serveLocalApi({ dataDir: dir, info, commands: handle, limits })
  after(() => api.close())
  return { dir, api, auth: { authorization: `Bearer ${await keyOf(dir)}` } }
}

describe('the local API over HTTP', () => {
  it('listens on 127.0.0.1 at a random port, records it in a 0600 provider.json, and answers a caller with the key', async () => {
    const previous = process.umask(0)
    let served: Awaited<ReturnType<typeof started>>
    try {
      served = await started('plain')
    } finally {
      process.umask(previous)
    }
    const { dir, api } = served
    const recorded = (await readApiInfo(dir))!
    assert.match(recorded.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.equal(recorded.url, api.url)
    assert.equal(recorded.pid, process.pid)
    assert.equal(recorded.peerId, 'peer')
    assert.equal((await stat(join(dir, statusFile))).mode & 0o777, 0o600)
    assert.equal((await stat(join(dir, apiKeyFile))).mode & 0o777, 0o600)
    assert.deepEqual(await callLocalApi(dir, 'status'), { answered: 'status' })
    assert.deepEqual(await callLocalApi(dir, 'pause'), { answered: 'pause' })

    await api.close()
    assert.equal(await readApiInfo(dir), undefined)
    await assert.rejects(send(recorded.url, { headers: served.auth }), /ECONNREFUSED/)
  })

  it('is not reachable on any other interface of the machine', async (t) => {
    const external = Object.values(networkInterfaces()).flat().find((address) => address?.family === 'IPv4' && !address.internal)
    if (external === undefined) return t.skip('this machine has no non-loopback IPv4 address')
    const { api } = await started('interfaces')
    const socket = connect({ host: external!.address, port: Number(new URL(api.url).port) })
    const [error] = (await once(socket, 'error')) as [NodeJS.ErrnoException]
    assert.equal(error.code, 'ECONNREFUSED')
  })

  it('refuses a request without the key or with a wrong one (401), and keeps serving', async () => {
    const { dir, api, auth } = await started('keys')
    const missing = await send(api.url)
    assert.equal(missing.status, 401)
    assert.equal(missing.body.error?.code, 'HEARTH_ERR_PROVIDER_NOT_RUNNING')
    assert.match(missing.headers['www-authenticate'] as string, /^Bearer/)
    assert.match(missing.body.error?.hint ?? '', /api\.key/)
    const key = await keyOf(dir)
    // Same length, one digit off; shorter; the key in another scheme.
    const wrong = `${key.slice(0, -1)}${key.endsWith('0') ? '1' : '0'}`
    for (const authorization of [`Bearer ${wrong}`, `Bearer ${key.slice(0, 10)}`, `Basic ${key}`, key]) {
      const refused = await send(api.url, { path: '/v1/stop', headers: { authorization } })
      assert.equal(refused.status, 401, authorization)
      assert.equal(refused.body.ok, false)
    }
    assert.deepEqual((await send(api.url, { headers: auth })).body, { ok: true, result: { answered: 'status' } })
  })

  it('refuses a foreign Host header (DNS rebinding) and a foreign Origin (403), even with the key', async () => {
    const { api, auth } = await started('browser')
    const port = new URL(api.url).port
    for (const host of [`evil.example:${port}`, `127.0.0.1:${Number(port) + 1}`, '127.0.0.1', `localhost.evil.example:${port}`]) {
      const refused = await send(api.url, { headers: { ...auth, host } })
      assert.equal(refused.status, 403, host)
      assert.match(refused.body.error?.message ?? '', /addressed to 127\.0\.0\.1/)
    }
    for (const origin of ['https://evil.example', 'null', `http://127.0.0.1:${Number(port) + 1}`, `https://127.0.0.1:${port}`]) {
      const refused = await send(api.url, { headers: { ...auth, origin } })
      assert.equal(refused.status, 403, origin)
      assert.match(refused.body.error?.message ?? '', /does not answer requests from the web page/)
    }
    // The API's own origin and `localhost` are its own.
    assert.equal((await send(api.url, { headers: { ...auth, origin: api.url } })).status, 200)
    assert.equal((await send(api.url, { headers: { ...auth, host: `localhost:${port}`, origin: `http://localhost:${port}` } })).status, 200)
  })

  it('answers 404 for an unknown command, 405 for another method, 400 and 415 for a malformed body', async () => {
    const { api, auth } = await started('routes')
    const unknown = await send(api.url, { path: '/v1/shutdown-everything', headers: auth })
    assert.equal(unknown.status, 404)
    assert.match(unknown.body.error?.hint ?? '', /POST \/v1\/status/)
    assert.equal((await send(api.url, { path: '/status', headers: auth })).status, 404)
    const get = await send(api.url, { method: 'GET', headers: auth })
    assert.equal(get.status, 405)
    assert.equal(get.headers.allow, 'POST')
    const json = { ...auth, 'content-type': 'application/json' }
    assert.equal((await send(api.url, { headers: json, body: '{"unfinished":' })).status, 400)
    assert.equal((await send(api.url, { headers: json, body: '[1,2]' })).status, 400)
    assert.equal((await send(api.url, { headers: { ...auth, 'content-type': 'text/plain' }, body: '{}' })).status, 415)
    assert.deepEqual((await send(api.url, { headers: json, body: '{}' })).body, { ok: true, result: { answered: 'status' } })
  })

})

describe('the local API under abuse', () => {
  it('refuses an oversized body (413), declared or streamed, without reading it all, and keeps serving', async () => {
    const { api, auth } = await started('big', { maxBodyBytes: 1024 })
    const headers = { ...auth, 'content-type': 'application/json' }
    const declared = await send(api.url, { headers, body: `{"pad":"${'x'.repeat(4096)}"}` })
    assert.equal(declared.status, 413)
    assert.equal(declared.body.error?.code, 'HEARTH_ERR_NET_MESSAGE_TOO_LARGE')
    // No Content-Length (chunked): counted as it arrives.
    const streamed = await new Promise<number>((done, reject) => {
      const { port } = new URL(api.url)
      const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/status', headers: { ...headers, 'transfer-encoding': 'chunked' } }, (res) => {
        res.resume()
        done(res.statusCode!)
      })
      req.on('error', reject)
      for (let i = 0; i < 8; i++) req.write('x'.repeat(512))
      req.end()
    })
    assert.equal(streamed, 413)
    assert.equal((await send(api.url, { headers: auth })).status, 200)
  })

  it('drops a slow client (slowloris: headers or body trickled) with 408, serving others meanwhile', async () => {
    const { api, auth } = await started('slow', { headersTimeoutMs: 400, requestTimeoutMs: 800 })
    const port = Number(new URL(api.url).port)
    const slowClient = async (partial: string): Promise<{ text: string }> => {
      const socket = connect({ host: '127.0.0.1', port })
      await once(socket, 'connect')
      socket.write(partial)
      let text = ''
      socket.on('data', (chunk: Buffer) => (text += chunk.toString()))
      // While this client holds its connection, an honest caller is answered.
      assert.equal((await send(api.url, { headers: auth })).status, 200)
      await once(socket, 'close')
      return { text }
    }
    const headers = await slowClient(`POST /v1/status HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nX-Slow: `)
    assert.match(headers.text, /^HTTP\/1\.1 408/)
    const body = await slowClient(`POST /v1/status HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: ${auth['authorization']}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{`)
    assert.match(body.text, /^HTTP\/1\.1 408/)
    assert.equal((await send(api.url, { headers: auth })).status, 200)
  })

  it('closes connections beyond its bound at once, and silent ones after the headers timeout', async () => {
    const { api, auth } = await started('crowd', { maxConnections: 2, headersTimeoutMs: 2_000, requestTimeoutMs: 4_000 })
    const port = Number(new URL(api.url).port)
    let closed = 0
    const closings = [0, 1, 2].map(async () => {
      // Read whatever comes (a 408, perhaps), else the end of the stream is never seen.
      const socket = connect({ host: '127.0.0.1', port }).resume()
      await once(socket, 'close')
      return ++closed
    })
    // The connection beyond the bound is closed at once: while the two the server took are still open.
    assert.equal(await Promise.race(closings), 1)
    await new Promise((resolve) => setImmediate(resolve))
    assert.equal(closed, 1, 'the connections within the bound stay open until their headers timeout')
    // The two the server took say nothing: they are dropped, and the API answers again.
    assert.deepEqual((await Promise.all(closings)).sort(), [1, 2, 3])
    assert.equal((await send(api.url, { headers: auth })).status, 200)
  })

})

describe('the local API: its records, keys and failures', () => {
  it('a stale provider.json of a killed provider: a clear "not running (pid N is gone)", and nothing is sent', async () => {
    const dir = await dataDir('stale')
    const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' })
    await once(child, 'exit')
    await writeFile(join(dir, statusFile), JSON.stringify({ ...info, pid: child.pid, url: 'http://127.0.0.1:9' }), { mode: 0o600 })
    await assert.rejects(callLocalApi(dir, 'status'), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_PROVIDER_NOT_RUNNING') && error.shortMessage.startsWith(`the provider is not running (pid ${child.pid} is gone`) && /hearth provider start/.test(error.hint ?? ''))
    await rm(join(dir, statusFile))
    await assert.rejects(callLocalApi(dir, 'status'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_PROVIDER_NOT_RUNNING') && /no provider\.json/.test(error.message))
  })

  it('refuses a provider.json that is no record of an HTTP API (damaged, an old socket record, a non-loopback URL)', async () => {
    const dir = await dataDir('odd-records')
    for (const record of ['{"pid": 1', JSON.stringify({ ...info, pid: process.pid, socket: '/tmp/provider.sock' }), JSON.stringify({ ...info, pid: process.pid, url: 'http://192.0.2.1:8080' })]) {
      await writeFile(join(dir, statusFile), record, { mode: 0o600 })
      await assert.rejects(callLocalApi(dir, 'status'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_PROVIDER_LOCAL_API') && /does not record a provider's local API/.test(error.message), record)
    }
  })

  it('replaces an API key file others could read instead of trusting it, and callers refuse such a file', async () => {
    const dir = await dataDir('loose-key')
    const keyPath = join(dir, apiKeyFile)
    const leaked = 'ab'.repeat(32)
    await writeFile(keyPath, `${leaked}\n`, { mode: 0o644 })
    await chmod(keyPath, 0o644)
    const api = await serveLocalApi({ dataDir: dir, info, commands: handle })
    try {
      const fresh = await keyOf(dir)
      assert.notEqual(fresh, leaked)
      assert.equal((await stat(keyPath)).mode & 0o777, 0o600)
      assert.equal((await send(api.url, { headers: { authorization: `Bearer ${leaked}` } })).status, 401)
      assert.deepEqual(await callLocalApi(dir, 'status'), { answered: 'status' })
      // Loosened while the provider runs: a caller does not send a key others may have read.
      await chmod(keyPath, 0o640)
      await assert.rejects(callLocalApi(dir, 'status'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_PROVIDER_NOT_RUNNING') && /accessible by group or others/.test(error.message))
    } finally {
      await api.close()
    }
  })

  it('a command that fails answers 500 with its error, and the caller gets that error', async () => {
    const dir = await dataDir('failing')
    const api = await serveLocalApi({ dataDir: dir, info, commands: tableOf(async () => Promise.reject(new Error('the agent broke'))) })
    try {
      await assert.rejects(callLocalApi(dir, 'resume'), (error: unknown) => isHearthError(error, 'HEARTH_ERR_INTERNAL') && error.shortMessage === 'the agent broke' && error.details?.['httpStatus'] === 500)
    } finally {
      await api.close()
    }
  })
})
