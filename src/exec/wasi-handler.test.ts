import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { existsSync, readdirSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { Agent, request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { compileAssemblyScript } from './assemblyscript-compiler.ts'
import { openDescriptors } from './platform.ts'
import type { ServedProgram } from './runtime.ts'
import { parseCgiResponse } from './wasi-handler-cgi.ts'
import { serveWasiHandler } from './wasi-handler.ts'
import type { WasiHandlerSpec } from './wasi-handler.ts'
import { createWasiRuntime } from './wasi-runtime.ts'
import type { WasiRuntime } from './wasi-runtime.ts'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One request over a fresh connection from connect(), with node's own HTTP client. */
async function send(served: ServedProgram, path: string, options: { method?: string; body?: Buffer; headers?: Record<string, string> } = {}): Promise<Answer> {
  const socket = await served.connect()
  return new Promise<Answer>((resolve, reject) => {
    const req = httpRequest(
      { method: options.method ?? 'GET', path, headers: { host: 'service.test', ...options.headers }, createConnection: () => socket as never },
      (res) => {
        const chunks: Buffer[] = []
        res.on('data', (chunk: Buffer) => chunks.push(chunk))
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }))
        res.on('error', reject)
      },
    )
    req.on('error', reject)
    req.end(options.body)
  })
}

const text = (answer: Answer): string => answer.body.toString('utf8')

describe('wasi-handler', () => {
  let work: string
  let dataDir: string
  let scratchDir: string
  let runtime: WasiRuntime
  let program: Uint8Array
  const served: ServedProgram[] = []

  /**
   * A handler over the test's service directory; `overrides` change its limits. One handler serves a directory at a
   * time, so the one before is stopped first (unless `keepPrevious`).
   */
  async function serve(overrides: Partial<WasiHandlerSpec> = {}, keepPrevious = false): Promise<ServedProgram> {
    if (!keepPrevious) await served.at(-1)?.stop()
    const handler = await serveWasiHandler(runtime, {
      program,
      args: ['handler'],
      env: { SERVICE_NAME: 'test' },
      rootDir: dataDir,
      scratchDir,
      logPath: join(work, `log-${served.length}.txt`),
      maxLogBytes: 64 << 10,
      maxMemoryBytes: 64 << 20,
      timeoutMs: 120_000,
      maxRequestBytes: 2 << 20,
      maxResponseBytes: 2 << 20,
      maxConcurrent: 2,
      ...overrides,
    })
    served.push(handler)
    return handler
  }

  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'hearth-wasi-handler-test-'))
    dataDir = join(work, 'service')
    scratchDir = join(work, 'scratch')
    await mkdir(dataDir)
    await mkdir(scratchDir)
    await writeFile(join(dataDir, 'hello.txt'), 'from the service directory\n')
    await writeFile(join(work, 'secret.txt'), 'outside the service directory\n')
    const source = await readFile(new URL('./testdata/cgi-handler.asc', import.meta.url), 'utf8')
    program = await compileAssemblyScript({ files: { 'handler.ts': source }, entry: 'handler.ts', optimize: false })
    runtime = createWasiRuntime({ maxWorkers: 2 })
  })

  after(async () => {
    await Promise.all(served.map((handler) => handler.stop()))
    await runtime.close()
    await rm(work, { recursive: true, force: true })
  })

  it('answers a GET with its query, a 404 and a redirect as the handler says, and passes headers on', async () => {
    const handler = await serve()
    await handler.waitListening(1000)
    const hello = await send(handler, '/hello?name=Ada')
    assert.equal(hello.status, 200)
    assert.equal(hello.headers['content-type'], 'text/plain')
    assert.equal(text(hello), 'Hello, Ada!\n')

    const missing = await send(handler, '/no/such/path')
    assert.equal(missing.status, 404)
    assert.equal(text(missing), 'no handler for /no/such/path\n')

    const redirect = await send(handler, '/redirect')
    assert.equal(redirect.status, 302)
    assert.equal(redirect.headers.location, '/hello?name=redirected')

    const header = await send(handler, '/header?name=x-request-tag', { headers: { 'X-Request-Tag': 'tag-42' } })
    assert.equal(text(header), 'tag-42')
    const service = await send(handler, '/header?name=host')
    assert.equal(text(service), 'service.test')

    // A keep-alive agent sends request after request over the one stream it was given.
    const socket = await handler.connect()
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    let connections = 0
    Object.assign(agent, { createConnection: () => (connections++, socket) })
    for (const name of ['one', 'two', 'three']) {
      const greeting = await new Promise<string>((resolve, reject) => {
        const req = httpRequest({ path: `/hello?name=${name}`, agent }, (res) => {
          const chunks: Buffer[] = []
          res.on('data', (chunk: Buffer) => chunks.push(chunk))
          res.on('end', () => resolve(Buffer.concat(chunks).toString()))
        })
        req.on('error', reject)
        req.end()
      })
      assert.equal(greeting, `Hello, ${name}!\n`)
    }
    assert.equal(connections, 1)
    agent.destroy()
  })

  it('passes a 1 MiB POST body on stdin and returns the answer byte for byte', async () => {
    const handler = await serve()
    const body = randomBytes(1 << 20)
    const echo = await send(handler, '/echo', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } })
    assert.equal(echo.status, 200)
    assert.equal(echo.headers['x-body-length'], String(body.length))
    assert.equal(echo.body.length, body.length)
    assert.ok(echo.body.equals(Buffer.from(body).reverse()), 'the body comes back reversed, byte for byte')

    const tooLarge = await send(handler, '/echo', { method: 'POST', body: Buffer.alloc((2 << 20) + 1) })
    assert.equal(tooLarge.status, 413)
  })

  it('answers 502 for a trap, a non-zero exit and malformed output, 504 past the deadline, and keeps serving', async () => {
    const handler = await serve({ timeoutMs: 1000, maxResponseBytes: 64 << 10, maxMemoryBytes: 8 << 20 })
    const trap = await send(handler, '/trap')
    assert.equal(trap.status, 502)
    assert.match(text(trap), /trapped/)

    const exit = await send(handler, '/exit')
    assert.equal(exit.status, 502)
    assert.match(text(exit), /exited with code 3/)
    assert.doesNotMatch(text(exit), /about to fail/)

    const malformed = await send(handler, '/malformed')
    assert.equal(malformed.status, 502)
    assert.match(text(malformed), /not a CGI response/)
    assert.doesNotMatch(text(malformed), /this is not a CGI response at all/)

    const oversize = await send(handler, '/echo', { method: 'POST', body: Buffer.alloc(100 << 10, 0x61) })
    assert.equal(oversize.status, 502)
    assert.match(text(oversize), /over the limit of 65536/)
    assert.equal(oversize.body.includes('aaaa'), false)

    const memory = await send(handler, '/allocate')
    assert.equal(memory.status, 502)
    assert.match(text(memory), /ran out of memory/)

    const loop = await send(handler, '/loop')
    assert.equal(loop.status, 504)
    assert.match(text(loop), /did not answer within 1000 ms/)

    // The failures were the requests', not the server's.
    assert.equal((await send(handler, '/hello?name=again')).status, 200)
    assert.ok((await handler.usage()).cpuMs > 0)
    // The stopped instance's descriptors under the service directory (its preopen at least) were closed.
    const open = openDescriptors()
    if (open !== undefined) assert.deepEqual(open.filter(({ target }) => target.startsWith(dataDir)), [])
  })

  it('runs at most maxConcurrent instances, queues up to maxQueued requests and refuses the rest with 503', async () => {
    const handler = await serve({ maxConcurrent: 1, maxQueued: 1 })
    await rm(join(dataDir, 'go'), { force: true })
    const first = send(handler, '/wait')
    // The first request holds the only instance once its instance has marked its scratch directory.
    const running = (): boolean =>
      readdirSync(scratchDir).some((parent) => readdirSync(join(scratchDir, parent)).some((request) => existsSync(join(scratchDir, parent, request, 'started'))))
    while (!running()) await new Promise((resolve) => setTimeout(resolve, 20))
    const rest = Array.from({ length: 7 }, () => send(handler, '/wait'))
    const refused = await Promise.all(rest.map((answer) => Promise.race([answer, new Promise<undefined>((resolve) => setTimeout(resolve, 5000))])))
    // Six of the seven are refused at once; one waits in the queue.
    assert.equal(refused.filter((answer) => answer?.status === 503).length, 6)
    await writeFile(join(dataDir, 'go'), '')
    const answers = [await first, ...(await Promise.all(rest))]
    assert.equal(answers.length, 8)
    assert.deepEqual(answers.map((answer) => answer.status).sort(), [200, 200, 503, 503, 503, 503, 503, 503])
    assert.deepEqual(answers.filter((answer) => answer.status === 200).map(text), ['went\n', 'went\n'])
    await rm(join(dataDir, 'go'))
  })

  it('lets the handler read the service directory, never change it, and reach nothing outside', async () => {
    const handler = await serve()
    const inside = await send(handler, '/read?path=/data/hello.txt')
    assert.equal(inside.status, 200)
    assert.equal(text(inside), 'from the service directory\n')

    for (const path of ['/etc/passwd', '../etc/passwd', '/data/../secret.txt', '/data/../../etc/passwd', '../../../../etc/passwd', '/../secret.txt']) {
      const escape = await send(handler, `/read?path=${path}`)
      assert.equal(escape.status, 404, `${path} must not be readable`)
      assert.match(text(escape), /cannot open/)
    }

    const create = await send(handler, '/write?path=/data/new.txt')
    assert.equal(create.status, 403)
    assert.equal(existsSync(join(dataDir, 'new.txt')), false)
    const overwrite = await send(handler, '/write?path=/data/hello.txt')
    assert.equal(overwrite.status, 403)
    assert.equal(await readFile(join(dataDir, 'hello.txt'), 'utf8'), 'from the service directory\n')

    // The scratch directory is the instance's own: writable, and gone for the next request.
    assert.equal((await send(handler, '/write?path=/note.txt')).status, 200)
    assert.equal((await send(handler, '/read?path=/note.txt')).status, 404)
  })

  it('appends every instance\'s stderr to the log, within its bound', async () => {
    const handler = await serve({ maxLogBytes: 4096 })
    const logPath = join(work, `log-${served.length - 1}.txt`)
    assert.equal((await send(handler, '/hello?name=log')).status, 200)
    assert.equal((await send(handler, '/trap')).status, 502)
    await handler.stop()
    const log = await readFile(logPath, 'utf8')
    assert.match(log, /^GET \/hello$/m)
    assert.match(log, /\[hearth\] GET \/trap: 502 the handler trapped/)

    const noisy = await serve({ maxLogBytes: 4096 })
    const noisyLog = join(work, `log-${served.length - 1}.txt`)
    for (let i = 0; i < 3; i++) assert.equal((await send(noisy, '/noise?n=200')).status, 200)
    await noisy.stop()
    const size = (await stat(noisyLog)).size
    assert.ok(size > 0 && size <= 4096, `log of ${size} bytes`)
    assert.match(await readFile(noisyLog, 'utf8'), /noise line 199\n$/)
  })

  it('refuses connections once stopped, and removes its scratch directories', async () => {
    const handler = await serve()
    assert.equal((await send(handler, '/hello?name=x')).status, 200)
    await handler.stop()
    assert.deepEqual(await handler.ended, { exitCode: 0, reason: 'stopped' })
    assert.deepEqual(readdirSync(scratchDir), [])
    await assert.rejects(handler.connect(), { code: 'HEARTH_ERR_EXEC_FAILED' })
    await assert.rejects(handler.waitListening(1000), { code: 'HEARTH_ERR_EXEC_FAILED' })
    await handler.stop()
  })

  it('refuses a second handler over the same service directory while the first serves', async () => {
    const first = await serve()
    await assert.rejects(serve({}, true), { code: 'HEARTH_ERR_EXEC_PATH_INVALID' })
    await first.stop()
    const again = await serve()
    await again.stop()
  })
})

describe('parseCgiResponse', () => {
  const parse = (output: string) => parseCgiResponse(Buffer.from(output, 'latin1'))

  it('reads Status, headers and the body, with LF or CRLF lines', () => {
    const answer = parse('Status: 404 Not Found\r\nContent-Type: text/plain\r\nX-One: 1\r\n\r\nbody\r\n\r\nmore')
    assert.ok(answer.ok)
    assert.equal(answer.status, 404)
    assert.equal(answer.statusText, 'Not Found')
    assert.deepEqual(answer.headers, [['Content-Type', 'text/plain'], ['X-One', '1']])
    assert.equal(Buffer.from(answer.body).toString(), 'body\r\n\r\nmore')
    const plain = parse('Content-Type: text/html\n\n<p>')
    assert.ok(plain.ok)
    assert.equal(plain.status, 200)
    assert.equal(Buffer.from(plain.body).toString(), '<p>')
  })

  it('refuses output that is not a CGI response', () => {
    for (const output of [
      'just text',
      'Content-Type: text/plain',
      'no colon here\n\nbody',
      'X-Only: header\n\nbody',
      'Status: 99 Odd\n\n',
      'Status: 102 Processing\n\n',
      'Bad Name: x\n\n',
      'Content-Type: a\u0001b\n\n',
      '\n\nbody without headers',
      `X-Big: ${'a'.repeat(70 << 10)}\n\n`,
    ]) {
      assert.equal(parse(output).ok, false, JSON.stringify(output.slice(0, 40)))
    }
  })
})
