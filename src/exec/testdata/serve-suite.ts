/**
 * What every serving runtime (docker, native) must do with a long-running server, checked the same way in both: a
 * real HTTP server (busybox httpd) reached only through ServedProgram.connect(), no network inside the sandbox, a
 * bounded log, and every way a server ends. Scripts run under a POSIX shell and call busybox applets by name
 * (`busybox httpd`), which both sandboxes have.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, stat, writeFile } from 'node:fs/promises'
import { Agent, createServer, request } from 'node:http'
import type { IncomingMessage, Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { networkInterfaces } from 'node:os'
import { join } from 'node:path'
import type { Duplex } from 'node:stream'
import { afterEach, describe, it } from 'node:test'
import { isHearthError } from '../../errors.ts'
import type { Runtime, ServedProgram, ServeSpec } from '../runtime.ts'
import { failsWith } from './fails-with.ts'

const MiB = 1 << 20

export interface ServeTarget<P> {
  name: string
  runtime(): Runtime<P>
  base(): string
  /** `sh -c script sh` as this runtime spells it. */
  shell(script: string): { program: P; args: string[] }
  /** Containers or cgroups the runtime left behind: [] when clean. */
  leftovers(): Promise<string[]>
}

/** Forwarder processes this test process started that still run (nsenter execs node in place: they are our children). */
export async function forwarderChildren(): Promise<number[]> {
  const found: number[] = []
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    const [statText, cmdline] = await Promise.all([readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''), readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '')])
    const ppid = Number(statText.slice(statText.lastIndexOf(')') + 2).split(' ')[1])
    if (ppid === process.pid && cmdline.includes('service-forwarder.mjs')) found.push(Number(entry))
  }
  return found
}

/** One HTTP/1.1 GET, over a connection `via` makes (one socket) or through an agent. */
function get(via: Agent | (() => Duplex), path: string): Promise<{ status: number; body: Buffer }> {
  return new Promise((resolveGet, rejectGet) => {
    const options = via instanceof Agent ? { agent: via } : { createConnection: () => via() as never }
    const req = request({ host: 'server', path, ...options }, (res: IncomingMessage) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }))
      res.on('error', rejectGet)
    })
    req.on('error', rejectGet)
    req.end()
  })
}

/** A GET on a fresh connection from `served`. */
async function getVia(served: ServedProgram, path: string): Promise<{ status: number; body: Buffer }> {
  const socket = await served.connect()
  return get(() => socket, path)
}

/** A keep-alive HTTP server written in busybox sh, one handler per connection: it counts the requests on its connection. */
const keepAliveHandler = [
  'n=0',
  "cr=$(printf '\\r')",
  'while IFS= read -r line; do',
  '  while IFS= read -r h; do [ "$h" = "$cr" ] || [ -z "$h" ] && break; done',
  '  n=$((n+1))',
  '  body="request $n on this connection"',
  "  printf 'HTTP/1.1 200 OK\\r\\nContent-Type: text/plain\\r\\nContent-Length: %s\\r\\n\\r\\n%s' \"${#body}\" \"$body\"",
  'done',
].join('\n')

export function serveSuite<P>(target: ServeTarget<P>): void {
  let count = 0
  const started: ServedProgram[] = []

  const newServer = async (script: string, overrides: Partial<ServeSpec<P>> = {}, files: Record<string, string | Buffer> = {}): Promise<{ served: ServedProgram; dir: string; rootDir: string; logPath: string }> => {
    const dir = join(target.base(), `server-${count++}`)
    const rootDir = join(dir, 'root')
    await mkdir(join(rootDir, 'www'), { recursive: true })
    for (const [name, content] of Object.entries(files)) await writeFile(join(rootDir, name), content)
    const logPath = join(dir, 'log')
    const port = 8080 + (count % 100)
    const spec: ServeSpec<P> = {
      ...target.shell(script.replaceAll('${PORT}', String(port))),
      env: {},
      port,
      rootDir,
      logPath,
      maxLogBytes: MiB,
      maxMemoryBytes: 64 * MiB,
      maxDiskBytes: 16 * MiB,
      ...overrides,
    }
    const served = await target.runtime().serve!(spec)
    started.push(served)
    return { served, dir, rootDir, logPath }
  }

  describe(`${target.name}: serve`, () => {
    // Whatever a test left running (it failed half-way) is stopped before the next one counts leftovers.
    afterEach(async () => {
      await Promise.all(started.splice(0).map((served) => served.stop()))
      assert.deepEqual(await forwarderChildren(), [], 'every forwarder ended with its server')
    })

    it('busybox httpd through connect(): files byte-identical, many connections at once, keep-alive on one connection, metered', async () => {
      const blob = randomBytes(3 * MiB + 17)
      const { served, rootDir } = await newServer('exec busybox httpd -f -p ${PORT} -h /task/www', {}, { 'www/blob.bin': blob, 'www/index.html': '<p>hearth</p>\n' })
      await served.waitListening(60_000)
      const one = await getVia(served, '/blob.bin')
      assert.equal(one.status, 200)
      assert.ok(one.body.equals(blob), `got ${one.body.length} bytes, expected ${blob.length}`)
      const many = await Promise.all(Array.from({ length: 40 }, (_, i) => getVia(served, i % 2 === 0 ? '/index.html' : '/blob.bin')))
      for (const [i, answer] of many.entries()) {
        assert.equal(answer.status, 200)
        assert.ok(answer.body.equals(i % 2 === 0 ? Buffer.from('<p>hearth</p>\n') : blob), `answer ${i} differs`)
      }
      assert.equal((await getVia(served, '/missing')).status, 404)
      const usage = await served.usage()
      assert.ok(usage.cpuMs > 0, `cpuMs ${usage.cpuMs}`)
      assert.ok(usage.uptimeMs > 0)
      await served.stop()
      assert.equal((await served.ended).reason, 'stopped')
      assert.deepEqual(await readFile(join(rootDir, 'www', 'blob.bin')), blob, 'the directory is the provider\'s again')

      const keepAlive = await newServer('exec busybox nc -ll -p ${PORT} -e busybox sh /task/ka.sh', {}, { 'ka.sh': keepAliveHandler })
      await keepAlive.served.waitListening(60_000)
      const socket = await keepAlive.served.connect()
      // An agent that keeps its one connection: every request after the first goes over the same socket.
      const agent = new Agent({ keepAlive: true, maxSockets: 1 })
      let connections = 0
      agent.createConnection = () => {
        connections++
        return socket as never
      }
      const bodies: string[] = []
      for (let i = 0; i < 3; i++) bodies.push((await get(agent, '/')).body.toString())
      assert.deepEqual(bodies, ['request 1 on this connection', 'request 2 on this connection', 'request 3 on this connection'])
      assert.equal(connections, 1)
      agent.destroy()
    })

    it('no network inside: neither the host\'s loopback nor its other addresses, only its own loopback', async () => {
      let reached = 0
      const host: Server = createServer((_req, res) => {
        reached++
        res.end('host')
      })
      await new Promise<void>((resolveListen) => host.listen(0, '0.0.0.0', resolveListen))
      const hostPort = (host.address() as AddressInfo).port
      const addresses = ['127.0.0.1', ...Object.values(networkInterfaces()).flatMap((list) => (list ?? []).filter((entry) => entry.family === 'IPv4' && !entry.internal).map((entry) => entry.address))]
      try {
        const probes = addresses.map((address) => `busybox timeout 5 busybox wget -q -O - http://${address}:${hostPort}/ > /dev/null 2>&1 && echo "reached ${address}" || echo "blocked ${address}"`)
        const script = [
          'busybox httpd -p ${PORT} -h /task/www',
          'for i in 1 2 3 4 5 6 7 8 9 10; do busybox timeout 5 busybox wget -q -O /task/self.out http://127.0.0.1:${PORT}/index.html && break; sleep 0.2; done',
          '{',
          ...probes,
          // The interfaces of its network namespace, as /proc shows them to a process in it.
          "busybox sed -n 's/^ *\\([^:]*\\):.*/\\1/p' /proc/net/dev | busybox tr '\\n' ' '; echo",
          '} > /task/probe.tmp; busybox mv /task/probe.tmp /task/probe.out',
          'exec busybox sleep 600',
        ].join('\n')
        const { served, rootDir, logPath } = await newServer(script, {}, { 'www/index.html': 'inside\n' })
        await served.waitListening(60_000)
        let probe = ''
        for (let tries = 0; tries < 600 && probe === ''; tries++) {
          probe = await readFile(join(rootDir, 'probe.out'), 'utf8').catch(() => '')
          if (probe === '') await new Promise((resolveDelay) => setTimeout(resolveDelay, 100))
        }
        assert.equal(await readFile(join(rootDir, 'self.out'), 'utf8').catch(() => ''), 'inside\n', `its own loopback works; the log: ${await readFile(logPath, 'utf8')}`)
        const lines = probe.trim().split('\n')
        assert.deepEqual(lines.slice(0, -1), addresses.map((address) => `blocked ${address}`))
        assert.equal(lines.at(-1)!.trim(), 'lo', 'no interface but loopback')
        assert.equal(reached, 0)
        await served.stop()
      } finally {
        host.close()
      }
    })

    it('logs stdout and stderr interleaved into logPath, kept under maxLogBytes with the newest lines', async () => {
      const maxLogBytes = 64 << 10
      const script = 'i=0; while [ $i -lt 20000 ]; do echo "out line $i"; i=$((i+1)); done; sleep 1; echo "err last" >&2; echo "out last"; exec busybox httpd -f -p ${PORT} -h /task/www'
      const { served, logPath } = await newServer(script, { maxLogBytes })
      await served.waitListening(120_000)
      // stdout and stderr are two pipes (docker: two streams, each with its own backlog in the engine): the pause lets
      // stdout drain before the last two lines, which may still come in either order.
      const complete = (text: string): boolean => text.includes('out last\n') && text.includes('err last\n')
      let text = ''
      for (let tries = 0; tries < 600 && !complete(text); tries++) {
        text = await readFile(logPath, 'utf8')
        if (!complete(text)) await new Promise((resolveDelay) => setTimeout(resolveDelay, 50))
      }
      assert.ok((await stat(logPath)).size <= maxLogBytes, `the log holds ${(await stat(logPath)).size} bytes`)
      assert.ok(complete(text), text.slice(-300))
      assert.ok(text.includes('out line 19999\n'))
      assert.ok(!text.includes('out line 0\n'), 'the oldest lines were dropped')
      await served.stop()
    })

    it('a server that ends settles ended; connect() then fails clearly; nothing is left (container or cgroup, forwarder)', async () => {
      const script = 'busybox httpd -p ${PORT} -h /task/www; while [ ! -e /task/stop ]; do sleep 0.05; done; exit 7'
      const { served, rootDir } = await newServer(script)
      await served.waitListening(60_000)
      assert.equal((await forwarderChildren()).length > 0, true)
      await writeFile(join(rootDir, 'stop'), '')
      assert.deepEqual(await served.ended, { exitCode: 7, reason: 'exited' })
      await assert.rejects(served.connect(), failsWith('HEARTH_ERR_EXEC_FAILED', /has ended \(exit code 7\)/))
      await served.stop()
      assert.deepEqual(await target.leftovers(), [])
      assert.deepEqual(await forwarderChildren(), [])
    })

    it('a server over its memory limit ends with reason memory', async () => {
      // Doubling with a pause: it stays past half its limit long enough to be seen there, however busy the machine.
      const { served } = await newServer('x=a; while :; do x="$x$x"; sleep 0.3; done', { maxMemoryBytes: 32 * MiB })
      const ending = await served.ended
      assert.equal(ending.reason, 'memory', JSON.stringify(ending))
      assert.deepEqual(await target.leftovers(), [])
    })

    it('waitListening names the exit code and the log when the program exits at once; times out when nothing listens', async () => {
      const { served } = await newServer('exec busybox httpd -f --no-such-flag')
      await assert.rejects(served.waitListening(60_000), (error) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_FAILED'), String(error))
        assert.match(error.message, /exit code 1\b/)
        assert.match(error.message, /Run in foreground/, 'the log\'s last lines: httpd\'s usage')
        return true
      })
      const idle = await newServer('exec busybox sleep 600')
      await assert.rejects(idle.served.waitListening(300), failsWith('HEARTH_ERR_EXEC_TIMEOUT', /did not listen on port/))
      await assert.rejects(idle.served.connect(), failsWith('HEARTH_ERR_EXEC_FAILED', /nothing listens on port/))
      await idle.served.stop()
      assert.equal((await idle.served.ended).reason, 'stopped')
      await idle.served.stop()
    })

    it('refuses a second server or run on a directory in use, a log inside it, a bad port', async () => {
      const first = await newServer('exec busybox sleep 600')
      const spec = { ...target.shell('exit 0'), env: {}, port: 8080, rootDir: first.rootDir, logPath: join(first.dir, 'log2'), maxLogBytes: MiB, maxMemoryBytes: 64 * MiB, maxDiskBytes: MiB }
      await assert.rejects(target.runtime().serve!(spec), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /in use/))
      await first.served.stop()
      await assert.rejects(target.runtime().serve!({ ...spec, logPath: join(first.rootDir, 'log') }), failsWith('HEARTH_ERR_EXEC_PATH_INVALID', /inside the task directory/))
      await assert.rejects(target.runtime().serve!({ ...spec, port: 0 }), failsWith('HEARTH_ERR_CONFIG_INVALID', /port/))
    })
  })
}
