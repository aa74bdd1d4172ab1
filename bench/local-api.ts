/**
 * `node --import tsx bench/local-api.ts [--json] [--runs 3] [--seconds 3] [--probe 2000]`: what a node's local API
 * (net/local-api-server.ts) costs per command against a bare node:http server answering the same JSON, both in this
 * process, the client on a keep-alive agent.
 *
 * The command is the dashboard's most frequent kind: a small JSON body checked by its zod schema, an answer of a few
 * hundred bytes; the API adds the Host, Origin and key checks (a SHA-256 of the key per request), the routing and
 * the envelope. Measured, the two taking turns, medians of `--runs` runs:
 * - at light load: `--probe` requests one after another, each timed in microseconds, p50/p99;
 * - under load: 8 requests in flight for `--seconds`, requests/s.
 * Also: building the OpenAPI document of the requestor node's full command table (done at each GET /openapi.json), and
 * events delivered per second to one authenticated WebSocket.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { Agent, createServer, request } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parseArgs } from 'node:util'
import { WebSocket } from 'ws'
import { z } from 'zod'
import { command, serveApi, type LocalApiKind } from '../src/net/local-api-server.ts'
import { createEventHub } from '../src/net/local-api-web.ts'
import { lineLogger, median, round } from './lib/stats.ts'

const { values } = parseArgs({
  options: {
    json: { type: 'boolean', default: false },
    runs: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3' },
    probe: { type: 'string', default: '2000' },
  },
})
const log = lineLogger(values.json)
const runs = Number(values.runs)

const kind: LocalApiKind = {
  who: 'bench node',
  statusFile: 'bench.json',
  startCommand: 'hearth bench',
  codes: { notRunning: 'HEARTH_ERR_REQUESTOR_NOT_RUNNING', localApi: 'HEARTH_ERR_REQUESTOR_LOCAL_API' },
  realm: 'hearth-bench',
}

const answer = { id: '20261207-0a1b2c3d', state: 'running', progress: { done: 12, total: 40, spentWei: '120000000000000000', etaSec: 31 }, tasks: Array.from({ length: 4 }, (_, index) => ({ index, state: 'done', provider: '0x4885a02a00000000000000000000000000000000' })) }
const body = JSON.stringify({ id: '20261207-0a1b2c3d' })

interface Target {
  port: number
  headers: Record<string, string>
}

function post(agent: Agent, target: Target): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port: target.port, path: '/v1/job', method: 'POST', agent, headers: { ...target.headers, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } }, (res) => {
      res.resume()
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function probe(target: Target, count: number): Promise<{ p50: number; p99: number }> {
  const agent = new Agent({ keepAlive: true, maxSockets: 1 })
  const times: number[] = []
  for (let i = 0; i < count; i++) {
    const started = process.hrtime.bigint()
    await post(agent, target)
    times.push(Number(process.hrtime.bigint() - started) / 1000)
  }
  agent.destroy()
  times.sort((a, b) => a - b)
  return { p50: times[Math.floor(times.length / 2)]!, p99: times[Math.floor(times.length * 0.99)]! }
}

async function load(target: Target, seconds: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 8 })
  const deadline = performance.now() + seconds * 1000
  let done = 0
  await Promise.all(Array.from({ length: 8 }, async () => {
    while (performance.now() < deadline) {
      await post(agent, target)
      done++
    }
  }))
  agent.destroy()
  return done / seconds
}

async function eventsPerSecond(url: string, key: string, hub: ReturnType<typeof createEventHub>, count: number): Promise<number> {
  const socket = new WebSocket(`${url.replace('http', 'ws')}/v1/events`)
  await new Promise<void>((resolve) => socket.on('open', () => resolve()))
  socket.send(JSON.stringify({ type: 'auth', key }))
  await new Promise<void>((resolve) => socket.once('message', () => resolve()))
  let received = 0
  const all = new Promise<void>((resolve) => socket.on('message', () => ++received === count && resolve()))
  const started = performance.now()
  for (let i = 0; i < count; i++) {
    hub.publish({ topic: 'job', data: { id: 'bench', progress: answer.progress } })
    if (i % 500 === 499) await new Promise((resolve) => setImmediate(resolve))
  }
  await all
  const perSecond = count / ((performance.now() - started) / 1000)
  socket.close()
  return perSecond
}

const dir = await mkdtemp(join(tmpdir(), 'hearth-bench-api-'))
const baseline = createServer((req, res) => {
  req.resume()
  req.on('end', () => {
    const text = JSON.stringify({ ok: true, result: answer })
    res.writeHead(200, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
    res.end(text)
  })
})
await new Promise<void>((resolve) => baseline.listen(0, '127.0.0.1', resolve))
const hub = createEventHub()
const api = await serveApi({
  dataDir: dir,
  kind,
  info: {},
  commands: { job: command({ summary: 'a job', body: z.strictObject({ id: z.string().min(1).max(64) }), result: z.unknown(), handle: async () => answer }) },
  web: { events: hub },
})
const key = (await readFile(join(dir, 'api.key'), 'utf8')).trim()
const apiPort = Number(new URL(api.url).port)
const targets = {
  bare: { port: (baseline.address() as AddressInfo).port, headers: {} },
  api: { port: apiPort, headers: { authorization: `Bearer ${key}`, host: `127.0.0.1:${apiPort}` } },
}

const figures = { bare: { p50: [] as number[], p99: [] as number[], rps: [] as number[] }, api: { p50: [] as number[], p99: [] as number[], rps: [] as number[] } }
await probe(targets.bare, 500)
await probe(targets.api, 500)
for (let run = 0; run < runs; run++) {
  for (const name of ['bare', 'api'] as const) {
    const latency = await probe(targets[name], Number(values.probe))
    figures[name].p50.push(latency.p50)
    figures[name].p99.push(latency.p99)
    figures[name].rps.push(await load(targets[name], Number(values.seconds)))
  }
}
const { openApiDocument } = await import('../src/net/local-api-doc.ts')
const docTimes: number[] = []
for (let i = 0; i < 5; i++) {
  const started = performance.now()
  openApiDocument({ kind, commands: await requestorTable(), url: api.url })
  docTimes.push(performance.now() - started)
}
const eventRates: number[] = []
for (let run = 0; run < runs; run++) eventRates.push(await eventsPerSecond(api.url, key, hub, 20_000))
const events = median(eventRates)

/** The requestor node's whole command table, with handlers that are never called: what its document is made from. */
async function requestorTable() {
  const { requestorCommandTable } = await import('../src/requestor/requestor-api.ts')
  const { storageCommandTable } = await import('../src/requestor/storage-api.ts')
  const never = (): never => {
    throw new Error('not called')
  }
  const table = requestorCommandTable({ dataDir: dir, info: { peerId: '', address: '0x', multiaddrs: [], startedAtMs: 0, gateways: [] }, services: { list: never, get: never } as never, storage: { answer: never, close: never }, views: {} as never, offers: never, stop: never })
  return { ...table, ...storageCommandTable({ answer: never, close: never }) }
}

const result = {
  probe: {
    bareP50Us: round(median(figures.bare.p50)), apiP50Us: round(median(figures.api.p50)),
    bareP99Us: round(median(figures.bare.p99)), apiP99Us: round(median(figures.api.p99)),
  },
  load: { bareRps: round(median(figures.bare.rps)), apiRps: round(median(figures.api.rps)), ratio: round(median(figures.api.rps) / median(figures.bare.rps)) },
  openApiDocumentMs: round(median(docTimes)),
  eventsPerSecond: round(events),
}
if (values.json) process.stdout.write(`${JSON.stringify(result)}\n`)
log(`one command at a time: p50 ${result.probe.apiP50Us} µs through the local API, ${result.probe.bareP50Us} µs bare node:http (p99 ${result.probe.apiP99Us} / ${result.probe.bareP99Us} µs)`)
log(`8 in flight: ${result.load.apiRps} commands/s through the local API, ${result.load.bareRps} bare: ${result.load.ratio}x`)
log(`the requestor node's OpenAPI document: built in ${result.openApiDocumentMs} ms`)
log(`events to one WebSocket: ${result.eventsPerSecond} per second`)
await api.close()
baseline.close()
await rm(dir, { recursive: true, force: true })
