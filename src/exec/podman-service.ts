/**
 * A private podman API service for tests (and for a provider on a machine without Docker): `podman system service`
 * on a socket of its own, with its own storage under one folder, so that tests touch nothing of the host's podman and
 * leave nothing behind.
 *
 * Flags measured on Debian 12 (STACK.md): runc, not crun (crun fails here), and cgroupfs, not systemd (no systemd
 * session in CI or containers). Storage is `vfs`: no overlay mounts to clean up and it works on any filesystem,
 * including an overlay root inside a CI container; copying a small image per container costs next to nothing.
 */
import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { closeSync, existsSync, openSync } from 'node:fs'
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { request } from 'node:http'
import { delimiter, isAbsolute, join } from 'node:path'
import { HearthError } from '../errors.ts'

/** What the service needs: podman and runc (crun fails here), catatonit for the containers' init (HostConfig.Init). */
export const podmanPackages = 'podman runc catatonit'

export interface PodmanService {
  socketPath: string
  /** Stops the service and removes its folder (storage included). */
  stop(): Promise<void>
}

export function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/bin:/bin').split(delimiter)) {
    if (!isAbsolute(dir)) continue
    const candidate = join(dir, name)
    if (existsSync(candidate)) return candidate
  }
  return undefined
}

/** Starts the service in `dir` (created; must not be shared) and waits until its socket answers. */
export async function startPodmanService(dir: string, startTimeoutMs = 20_000): Promise<PodmanService> {
  const missing = ['podman', 'runc'].filter((name) => findOnPath(name) === undefined)
  // podman looks for the init at this fixed path (containers.conf init_path); Debian's catatonit package puts it there.
  if (!existsSync('/usr/libexec/podman/catatonit')) missing.push('catatonit')
  if (missing.length > 0) {
    throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `cannot start a podman service: ${missing.join(' and ')} not installed`, {
      hint: `Debian: apt-get install -y --no-install-recommends ${podmanPackages}`,
    })
  }
  if (process.getuid?.() !== 0) {
    // Rootless podman needs subuid ranges and a user session; the runtime's uid handling assumes a rootful engine.
    throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', 'the podman test service runs as root (rootful podman); this process is not root')
  }
  await mkdir(dir, { recursive: true })
  // podman refuses a runroot longer than 50 characters: it gets a short folder of its own.
  const runRoot = await mkdtemp(join(tmpdir(), 'hpr-'))
  const socketPath = join(dir, 'podman.sock')
  const configPath = join(dir, 'containers.conf')
  // containers.conf for this service only (CONTAINERS_CONF replaces the system's): no journald (absent in CI), ulimits a
  // process without CAP_SYS_RESOURCE may set, no registry ever consulted.
  await writeFile(
    configPath,
    [
      '[containers]',
      'log_driver = "k8s-file"',
      'default_ulimits = ["nofile=1024:1024", "nproc=32768:32768"]',
      '[engine]',
      'runtime = "runc"',
      'cgroup_manager = "cgroupfs"',
      'events_logger = "file"',
      'image_default_transport = "containers-storage:"',
      '',
    ].join('\n'),
  )
  const args = [
    '--runtime',
    'runc',
    '--cgroup-manager',
    'cgroupfs',
    '--storage-driver',
    'vfs',
    '--root',
    join(dir, 'storage'),
    '--runroot',
    runRoot,
    '--tmpdir',
    join(dir, 'tmp'),
    'system',
    'service',
    '--time=0',
    `unix://${socketPath}`,
  ]
  const logPath = join(dir, 'service.log')
  const log = openSync(logPath, 'w')
  const child: ChildProcess = spawn('podman', args, {
    // conmon leaves files (an "oom" marker after an out-of-memory kill) in its working directory: keep them in ours.
    cwd: dir,
    stdio: ['ignore', log, log],
    env: { ...process.env, CONTAINERS_CONF: configPath },
  })
  closeSync(log)
  let exitCode: number | null | undefined
  child.on('exit', (code) => (exitCode = code))
  const stopSync = (): void => {
    if (child.exitCode === null && child.pid !== undefined) child.kill('SIGKILL')
  }
  // Never outlive the test process, even when it fails before stop().
  process.once('exit', stopSync)

  const deadline = performance.now() + startTimeoutMs
  while (!(await ping(socketPath))) {
    if (exitCode !== undefined || performance.now() > deadline) {
      stopSync()
      await rm(runRoot, { recursive: true, force: true })
      const text = await readFile(logPath, 'utf8').catch(() => '')
      throw new HearthError(
        'HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE',
        `podman system service did not come up on ${socketPath} (${exitCode !== undefined ? `exit code ${exitCode}` : `no answer in ${startTimeoutMs} ms`}): ${text.trim().split('\n').slice(-5).join(' | ')}`,
        { hint: `Debian: apt-get install -y --no-install-recommends ${podmanPackages}` },
      )
    }
    await new Promise((resolveDelay) => setTimeout(resolveDelay, 50))
  }

  return {
    socketPath,
    async stop() {
      process.removeListener('exit', stopSync)
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise((resolveExit) => child.once('exit', resolveExit))
        child.kill('SIGTERM')
        const timer = setTimeout(stopSync, 5_000)
        await gone
        clearTimeout(timer)
      }
      // Anything still mounted under the folder (a container's /dev/shm when a run was cut short) would make rm fail.
      const mounts = (await readFile('/proc/self/mounts', 'utf8').catch(() => ''))
        .split('\n')
        .map((line) => line.split(' ')[1] ?? '')
        .filter((mountPoint) => mountPoint.startsWith(dir + '/') || mountPoint.startsWith(runRoot + '/'))
        .sort((a, b) => b.length - a.length)
      for (const mountPoint of mounts) spawnSync('umount', ['-l', mountPoint])
      // A container's monitor still exiting may write into the storage a moment longer: rm tries again then.
      await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 })
      await rm(runRoot, { recursive: true, force: true, maxRetries: 10, retryDelay: 200 })
    },
  }
}

function ping(socketPath: string): Promise<boolean> {
  if (!existsSync(socketPath)) return Promise.resolve(false)
  return new Promise((resolvePing) => {
    const req = request({ socketPath, path: '/_ping', timeout: 1_000 }, (res) => {
      res.resume()
      resolvePing(res.statusCode === 200)
    })
    req.on('error', () => resolvePing(false))
    req.on('timeout', () => req.destroy())
    req.end()
  })
}
