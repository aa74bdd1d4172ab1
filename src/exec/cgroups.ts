/**
 * One cgroup per native run: memory, CPU quota and process-count limits, CPU-time metering, and a way to kill
 * everything a run started. Supports cgroup v1 (one hierarchy per controller, e.g. /sys/fs/cgroup/memory) and v2
 * (the unified hierarchy), found from /proc/self/mountinfo and /proc/self/cgroup rather than assumed paths, because
 * containers, hybrid systems and co-mounted controllers (cpu,cpuacct) put them in different places.
 *
 * Run groups are made under this process's own cgroup (or a given parent), never beside it: the limits of whoever
 * runs Hearth then still bound the runs, and Hearth touches nothing it did not create. Their names carry this process's
 * pid (`hearth-run-<pid>-<n>`), so groups left by a Hearth process that died are recognised and swept.
 */
import { mkdir, readdir, readFile, rmdir, stat, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import { hasLinuxKernelFiles, platform } from './platform.ts'

export interface CgroupLimits {
  memoryBytes: number
  /** CPU time per wall-clock time (1 = one core). */
  cpuCores: number
  /** Processes and threads at once (pids controller): what stops a fork bomb. */
  maxProcesses: number
}

export interface RunCgroup {
  readonly name: string
  /** The cgroup.procs files a process writes its own pid into to come under every limit (one per hierarchy). */
  readonly procsFiles: string[]
  /** CPU time used by every process that was in the group, in ns. */
  cpuNs(): Promise<number>
  /** How many times the kernel's OOM killer killed a process of the group. */
  oomKills(): Promise<number>
  /** Processes in the group now (host pids). */
  pids(): Promise<number[]>
  /** SIGKILLs every process in the group until it is empty; throws when some survive. */
  killAll(): Promise<void>
  /** Removes the group (it must be empty: call killAll first). */
  remove(): Promise<void>
}

export interface Cgroups {
  readonly version: 1 | 2
  /** The folders run groups are made in, one per hierarchy. */
  readonly parents: string[]
  create(limits: CgroupLimits): Promise<RunCgroup>
  /** Run groups of this process that exist now: none between runs, unless a clean-up failed. */
  leftovers(): Promise<string[]>
}

export interface CgroupOptions {
  /** Where run groups are made under cgroup v2, instead of this process's own cgroup (e.g. a delegated, empty one). */
  v2Parent?: string
  /** For tests: files to read instead of /proc/self/mountinfo and /proc/self/cgroup. */
  mountinfoPath?: string
  selfCgroupPath?: string
}

export type CgroupDetection = { ok: true; cgroups: Cgroups } | { ok: false; reason: string }

const v1Controllers = ['memory', 'cpu', 'cpuacct', 'pids'] as const
const v2Controllers = ['memory', 'cpu', 'pids'] as const
const cpuPeriodUs = 100_000
/** Below this a sandbox cannot even start (bwrap, a shell and the dynamic loader need ~1-2 MiB). */
const minMemoryBytes = 1 << 20
const namePrefix = 'hearth-run-'
let nextRunId = 1

interface Mount {
  root: string
  mountPoint: string
  fsType: string
  superOptions: string[]
}

/** Finds usable cgroups (v2 first, then v1) or says exactly what is missing. Sweeps run groups left by dead processes. */
export async function detectCgroups(options: CgroupOptions = {}): Promise<CgroupDetection> {
  if (!hasLinuxKernelFiles()) return { ok: false, reason: `cgroups exist only on Linux (this system is ${platform().name})` }
  let mounts: Mount[]
  let membership: Map<string, string>
  try {
    mounts = parseMountinfo(await readFile(options.mountinfoPath ?? '/proc/self/mountinfo', 'utf8'))
    membership = parseSelfCgroup(await readFile(options.selfCgroupPath ?? '/proc/self/cgroup', 'utf8'))
  } catch (error) {
    return { ok: false, reason: `cannot read this process's cgroups from /proc: ${(error as Error).message}` }
  }
  const v2 = await detectV2(mounts, membership, options.v2Parent)
  if (v2.ok) return sweptResult(v2.cgroups)
  const v1 = await detectV1(mounts, membership)
  if (v1.ok) return sweptResult(v1.cgroups)
  return { ok: false, reason: `no usable cgroups for limits: ${v2.reason}; ${v1.reason}` }
}

async function sweptResult(cgroups: Cgroups): Promise<CgroupDetection> {
  await sweepStale(cgroups.parents)
  return { ok: true, cgroups }
}

/** Parses /proc/self/mountinfo: `id parent dev root mountpoint options [optional...] - fstype source superoptions`. */
export function parseMountinfo(text: string): Mount[] {
  const mounts: Mount[] = []
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ')
    if (left === undefined || right === undefined) continue
    const fields = left.split(' ')
    const [fsType, , superOptions] = right.split(' ')
    if (fields.length < 5 || fsType === undefined) continue
    mounts.push({
      root: unescapeMountPath(fields[3]!),
      mountPoint: unescapeMountPath(fields[4]!),
      fsType,
      superOptions: (superOptions ?? '').split(','),
    })
  }
  return mounts
}

/** mountinfo writes space, tab, newline and backslash in paths as octal escapes (\040). */
function unescapeMountPath(path: string): string {
  return path.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)))
}

/** Parses /proc/self/cgroup into controller → path; the v2 entry (`0::/path`) is keyed ''. */
export function parseSelfCgroup(text: string): Map<string, string> {
  const membership = new Map<string, string>()
  for (const line of text.split('\n')) {
    const match = /^\d+:([^:]*):(.*)$/.exec(line)
    if (match === null) continue
    if (match[1] === '') membership.set('', match[2]!)
    for (const controller of match[1]!.split(',')) if (controller !== '') membership.set(controller, match[2]!)
  }
  return membership
}

/** The folder of cgroup `path` (as /proc/self/cgroup names it) under a mount of its hierarchy. */
function folderOf(mount: Mount, path: string): string {
  // A mount may show only a subtree (root != '/'); a cgroup namespace shows paths from its own root.
  const inside = mount.root !== '/' && (path === mount.root || path.startsWith(mount.root + '/')) ? path.slice(mount.root.length) : path
  // join keeps a trailing slash ('/sys/fs/cgroup/pids/' for the root group); folders are compared as strings.
  return join(mount.mountPoint, inside).replace(/(?<=.)\/+$/, '')
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  )
}

async function detectV2(mounts: Mount[], membership: Map<string, string>, parentOverride: string | undefined): Promise<CgroupDetection> {
  const mount = mounts.find((entry) => entry.fsType === 'cgroup2')
  if (mount === undefined) return { ok: false, reason: 'cgroup v2 is not mounted' }
  const parent = parentOverride ?? folderOf(mount, membership.get('') ?? '/')
  let available: string[]
  try {
    available = (await readFile(join(parent, 'cgroup.controllers'), 'utf8')).trim().split(/\s+/)
  } catch {
    return { ok: false, reason: `cgroup v2: ${parent} is not a cgroup folder (no cgroup.controllers)` }
  }
  const missing = v2Controllers.filter((name) => !available.includes(name))
  if (missing.length > 0) {
    return {
      ok: false,
      reason: `cgroup v2 at ${mount.mountPoint} does not offer the ${missing.join(', ')} controller${missing.length > 1 ? 's' : ''} to ${parent}`,
    }
  }
  const enabled = (await readFile(join(parent, 'cgroup.subtree_control'), 'utf8').catch(() => '')).trim().split(/\s+/)
  const toEnable = v2Controllers.filter((name) => !enabled.includes(name))
  if (toEnable.length > 0) {
    try {
      await writeFile(join(parent, 'cgroup.subtree_control'), toEnable.map((name) => `+${name}`).join(' '))
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code
      return {
        ok: false,
        reason:
          `cgroup v2: cannot enable ${toEnable.join(', ')} for child groups of ${parent} (${code ?? (error as Error).message})` +
          (code === 'EBUSY'
            ? ': a cgroup that holds processes (such as this process\'s own) cannot hand controllers to children; ' +
              'run Hearth in a delegated cgroup (systemd: Delegate=yes) and pass an empty child of it as the v2 parent'
            : ''),
      }
    }
  }
  return { ok: true, cgroups: new V2Cgroups(parent) }
}

async function detectV1(mounts: Mount[], membership: Map<string, string>): Promise<CgroupDetection> {
  const folders = new Map<string, string>()
  const missing: string[] = []
  for (const controller of v1Controllers) {
    const mount = mounts.find((entry) => entry.fsType === 'cgroup' && entry.superOptions.includes(controller))
    const path = membership.get(controller)
    if (mount === undefined || path === undefined) {
      missing.push(controller)
      continue
    }
    const folder = folderOf(mount, path)
    // In a container the mount may show only the container's own group, named by its host path in /proc/self/cgroup.
    folders.set(controller, (await exists(folder)) ? folder : mount.mountPoint)
  }
  if (missing.length > 0) {
    return { ok: false, reason: `cgroup v1 lacks the ${missing.join(', ')} controller${missing.length > 1 ? 's' : ''} (not mounted)` }
  }
  return { ok: true, cgroups: new V1Cgroups(folders as Map<(typeof v1Controllers)[number], string>) }
}

/** Removes run groups whose Hearth process is gone (it crashed before removing them), killing what is left in them. */
async function sweepStale(parents: string[]): Promise<void> {
  for (const parent of parents) {
    const names = await readdir(parent).catch(() => [] as string[])
    for (const name of names) {
      const match = new RegExp(`^${namePrefix}(\\d+)-`).exec(name)
      if (match === null || isAlive(Number(match[1]))) continue
      const folder = join(parent, name)
      await killPids(await readPids([join(folder, 'cgroup.procs')]))
      await rmdir(folder).catch(() => {})
    }
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

async function readPids(procsFiles: string[]): Promise<number[]> {
  const pids = new Set<number>()
  for (const file of procsFiles) {
    const text = await readFile(file, 'utf8').catch(() => '')
    for (const line of text.split('\n')) if (line.trim() !== '') pids.add(Number(line))
  }
  return [...pids]
}

async function killPids(pids: number[]): Promise<void> {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone already
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Kills until the group is empty. A fork bomb can add processes between a read and the kills, so this repeats. */
async function killUntilEmpty(name: string, procsFiles: string[], killSwitch?: () => Promise<boolean>): Promise<void> {
  const deadline = performance.now() + 5_000
  let usedSwitch = false
  for (let round = 0; ; round++) {
    const pids = await readPids(procsFiles)
    if (pids.length === 0) return
    if (performance.now() > deadline) {
      throw new HearthError('HEARTH_ERR_EXEC_FAILED', `cgroup ${name} still holds ${pids.length} process(es) after SIGKILL for 5 s`, {
        details: { pids: pids.slice(0, 20) },
      })
    }
    // cgroup.kill (v2, Linux 5.14+) kills the whole group at once, so nothing can fork away from the loop below.
    if (!usedSwitch && killSwitch !== undefined) usedSwitch = await killSwitch()
    else await killPids(pids)
    await sleep(Math.min(2 ** round, 50))
  }
}

function removeGroup(name: string, folders: string[], procsFiles: string[]): () => Promise<void> {
  return async () => {
    for (const folder of folders) {
      for (let attempt = 0; ; attempt++) {
        try {
          await rmdir(folder)
          break
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code
          if (code === 'ENOENT') break
          // EBUSY while the last killed processes are being reaped: give the kernel a moment.
          if (code === 'EBUSY' && attempt < 50) {
            await killPids(await readPids(procsFiles))
            await sleep(10)
            continue
          }
          throw new HearthError('HEARTH_ERR_EXEC_FAILED', `cannot remove cgroup ${folder} after a run: ${code ?? (error as Error).message}`, {
            cause: error,
            details: { cgroup: name },
          })
        }
      }
    }
  }
}

async function makeGroup(folders: string[], write: () => Promise<void>): Promise<void> {
  const made: string[] = []
  try {
    for (const folder of folders) {
      await mkdir(folder)
      made.push(folder)
    }
    await write()
  } catch (error) {
    await Promise.allSettled(made.map((folder) => rmdir(folder)))
    throw new HearthError('HEARTH_ERR_EXEC_FAILED', `cannot set up a cgroup for the run: ${(error as Error).message}`, { cause: error })
  }
}

function newName(): string {
  return `${namePrefix}${process.pid}-${nextRunId++}`
}

async function listLeftovers(parents: string[]): Promise<string[]> {
  const mine = `${namePrefix}${process.pid}-`
  const found: string[] = []
  for (const parent of parents) {
    for (const name of await readdir(parent).catch(() => [] as string[])) if (name.startsWith(mine)) found.push(join(parent, name))
  }
  return found
}

class V1Cgroups implements Cgroups {
  readonly version = 1 as const
  readonly parents: string[]

  constructor(private readonly folders: Map<(typeof v1Controllers)[number], string>) {
    // cpu and cpuacct are often co-mounted: one folder serves both.
    this.parents = [...new Set(folders.values())]
  }

  async create(limits: CgroupLimits): Promise<RunCgroup> {
    const name = newName()
    const dir = (controller: (typeof v1Controllers)[number]): string => join(this.folders.get(controller)!, name)
    const folders = this.parents.map((parent) => join(parent, name))
    await makeGroup(folders, async () => {
      const memoryBytes = String(Math.max(minMemoryBytes, Math.floor(limits.memoryBytes)))
      await writeFile(join(dir('memory'), 'memory.limit_in_bytes'), memoryBytes)
      // memory+swap: without it the limit only moves the excess to swap. Absent when swap accounting is off.
      if (await exists(join(dir('memory'), 'memory.memsw.limit_in_bytes'))) {
        await writeFile(join(dir('memory'), 'memory.memsw.limit_in_bytes'), memoryBytes)
      }
      await writeFile(join(dir('cpu'), 'cpu.cfs_period_us'), String(cpuPeriodUs))
      await writeFile(join(dir('cpu'), 'cpu.cfs_quota_us'), String(quotaUs(limits.cpuCores)))
      await writeFile(join(dir('pids'), 'pids.max'), String(limits.maxProcesses))
    })
    const procsFiles = folders.map((folder) => join(folder, 'cgroup.procs'))
    return {
      name,
      procsFiles,
      cpuNs: async () => Number(await readFile(join(dir('cpuacct'), 'cpuacct.usage'), 'utf8')),
      // "oom_kill N" in memory.oom_control since Linux 4.13.
      oomKills: async () => counter(await readFile(join(dir('memory'), 'memory.oom_control'), 'utf8').catch(() => ''), 'oom_kill'),
      pids: () => readPids(procsFiles),
      killAll: () => killUntilEmpty(name, procsFiles),
      remove: removeGroup(name, folders, procsFiles),
    }
  }

  leftovers(): Promise<string[]> {
    return listLeftovers(this.parents)
  }
}

class V2Cgroups implements Cgroups {
  readonly version = 2 as const
  readonly parents: string[]

  constructor(parent: string) {
    this.parents = [parent]
  }

  async create(limits: CgroupLimits): Promise<RunCgroup> {
    const name = newName()
    const folder = join(this.parents[0]!, name)
    await makeGroup([folder], async () => {
      await writeFile(join(folder, 'memory.max'), String(Math.max(minMemoryBytes, Math.floor(limits.memoryBytes))))
      // Without it the limit only moves the excess to swap. Absent when the kernel has no swap accounting.
      if (await exists(join(folder, 'memory.swap.max'))) await writeFile(join(folder, 'memory.swap.max'), '0')
      await writeFile(join(folder, 'cpu.max'), `${quotaUs(limits.cpuCores)} ${cpuPeriodUs}`)
      await writeFile(join(folder, 'pids.max'), String(limits.maxProcesses))
    })
    const procsFiles = [join(folder, 'cgroup.procs')]
    const killSwitch = async (): Promise<boolean> =>
      writeFile(join(folder, 'cgroup.kill'), '1').then(
        () => true,
        () => false,
      )
    return {
      name,
      procsFiles,
      cpuNs: async () => counter(await readFile(join(folder, 'cpu.stat'), 'utf8'), 'usage_usec') * 1000,
      oomKills: async () => counter(await readFile(join(folder, 'memory.events'), 'utf8').catch(() => ''), 'oom_kill'),
      pids: () => readPids(procsFiles),
      killAll: () => killUntilEmpty(name, procsFiles, killSwitch),
      remove: removeGroup(name, [folder], procsFiles),
    }
  }

  leftovers(): Promise<string[]> {
    return listLeftovers(this.parents)
  }
}

function quotaUs(cpuCores: number): number {
  // The kernel refuses quotas under 1 ms.
  return Math.max(1000, Math.round(cpuCores * cpuPeriodUs))
}

/** The number after `key` in a flat-keyed cgroup file ("key value" lines); 0 when absent. */
export function counter(text: string, key: string): number {
  const match = new RegExp(`^${key} (\\d+)$`, 'm').exec(text)
  return match === null ? 0 : Number(match[1])
}
