/**
 * An HTTP client of a service's gateway, run as a process on a testbed host (`node --import tsx service-client.ts
 * MODE …`), so that its requests come from that host's address and cross the testbed's links. Each request opens a
 * connection of its own (busybox httpd closes every connection anyway). Output is JSON lines on stdout.
 *
 *   get URL…          one GET each: {url, status, replica, version, body (base64)}
 *   load URL RATE     GETs started at a fixed rate (open loop: a slow answer does not hold back the next request)
 *                     until a line "stop" on stdin: {event:"started"}, then {results: [[startMs, endMs, status,
 *                     replica, version, sha256 of the body | error], …]}
 *   post URL BYTES    a POST declaring BYTES of body, of which half is sent ({event:"sent"}) and never the rest; once
 *                     the request ends, its outcome: {outcome: "status N" | "reset"}
 */
import { createHash } from 'node:crypto'
import { request } from 'node:http'
import { createInterface } from 'node:readline'

type Sample = [startMs: number, endMs: number, status: number, replica: string, version: string, body: string]

const print = (line: object): void => void process.stdout.write(`${JSON.stringify(line)}\n`)

function get(url: string, timeoutMs: number): Promise<{ status: number; replica: string; version: string; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { agent: false, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolve({ status: res.statusCode ?? 0, replica: String(res.headers['x-hearth-replica'] ?? ''), version: String(res.headers['x-hearth-version'] ?? ''), body: Buffer.concat(chunks) }))
      res.on('error', reject)
      res.on('aborted', () => reject(new Error('response aborted')))
    })
    req.on('timeout', () => req.destroy(new Error(`no answer in ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end()
  })
}

function untilLine(text: string): Promise<void> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin })
    lines.on('line', (line) => line.trim() === text && resolve())
    lines.on('close', () => resolve())
  })
}

async function load(url: string, rate: number): Promise<void> {
  const samples: Sample[] = []
  const pending = new Set<Promise<void>>()
  let stopped = false
  void untilLine('stop').then(() => (stopped = true))
  print({ event: 'started' })
  const started = Date.now()
  for (let n = 0; !stopped; n++) {
    const startMs = Date.now()
    const one = get(url, 30_000).then(
      (answer) => void samples.push([startMs, Date.now(), answer.status, answer.replica, answer.version, createHash('sha256').update(answer.body).digest('hex')]),
      (error: Error) => void samples.push([startMs, Date.now(), 0, '', '', `error: ${error.message}`]),
    )
    pending.add(one)
    void one.finally(() => pending.delete(one))
    const next = started + ((n + 1) * 1000) / rate
    await new Promise((resolve) => setTimeout(resolve, Math.max(0, next - Date.now())))
  }
  await Promise.all(pending)
  print({ results: samples.sort((a, b) => a[0] - b[0]) })
}

async function post(url: string, bytes: number): Promise<void> {
  const outcome = new Promise<string>((resolve) => {
    const req = request(url, { method: 'POST', agent: false, headers: { 'content-length': String(bytes) } }, (res) => {
      res.resume()
      res.on('end', () => resolve(`status ${res.statusCode}`))
      res.on('error', () => resolve('reset'))
      res.on('aborted', () => resolve('reset'))
    })
    req.on('error', () => resolve('reset'))
    req.write(Buffer.alloc(Math.floor(bytes / 2), 0x61), () => print({ event: 'sent' }))
  })
  print({ outcome: await outcome })
}

const [mode, ...args] = process.argv.slice(2)
if (mode === 'get') {
  for (const url of args) {
    const answer = await get(url, 30_000).catch((error: Error) => ({ status: 0, replica: '', version: '', body: Buffer.from(error.message) }))
    print({ url, status: answer.status, replica: answer.replica, version: answer.version, body: answer.body.toString('base64') })
  }
} else if (mode === 'load') {
  await load(args[0]!, Number(args[1]))
} else if (mode === 'post') {
  await post(args[0]!, Number(args[1]))
} else {
  process.stderr.write('usage: service-client.ts get URL… | load URL RATE | post URL BYTES\n')
  process.exitCode = 2
}
