/**
 * What the native runtime needs before it can run anything, checked once: Linux, bubblewrap, a seccomp filter for this
 * architecture, writable cgroups, the provider's read-only paths and at least one offered program; then a trial
 * sandbox, since bwrap can be installed yet unusable here.
 */
import { spawn } from 'node:child_process'
import { constants } from 'node:fs'
import { access, lstat } from 'node:fs/promises'
import { delimiter, isAbsolute, join } from 'node:path'
import { isHearthError } from '../errors.ts'
import { detectCgroups } from './cgroups.ts'
import type { CgroupOptions, Cgroups, RunCgroup } from './cgroups.ts'
import { collect, feedSeccomp, parseStatus, wrapperArgs } from './native-launch.ts'
import { baseSandboxArgs, hostMounts, readOnlyRootArgs } from './native-sandbox.ts'
import type { HostMounts } from './native-sandbox.ts'
import { nativeUnavailableReason } from './platform.ts'
import { seccompFilterBytes } from './seccomp.ts'

/** What every run of a native runtime uses. */
export interface Setup extends HostMounts {
  bwrap: string
  cgroups: Cgroups
  /** The compiled seccomp filter, fed to bwrap on fd 4 for each sandbox. */
  seccomp: Buffer
}

export type SetupResult = { ok: true; setup: Setup } | { ok: false; reason: string }

/** The runtime's checked configuration that the setup looks at. */
export interface SetupOptions {
  /** The bubblewrap binary; undefined: `bwrap` on PATH. */
  bwrapPath: string | undefined
  cgroups: CgroupOptions | undefined
  programs: Set<string>
  readOnlyPaths: string[]
  maxProcesses: number
}

/** Checks everything a run needs, once; the answer says exactly what is missing. */
export async function prepareSetup(options: SetupOptions): Promise<SetupResult> {
  const { programs, readOnlyPaths } = options
  const notLinux = nativeUnavailableReason()
  if (notLinux !== undefined) return { ok: false, reason: notLinux }
  const bwrap = await findBwrap(options.bwrapPath)
  if (bwrap === undefined) {
    return {
      ok: false,
      reason:
        options.bwrapPath === undefined
          ? 'bubblewrap is not installed (no `bwrap` on PATH): install the Debian/Ubuntu package `bubblewrap`'
          : `bubblewrap was configured at ${options.bwrapPath}, which is not an executable file`,
    }
  }
  let seccomp: Buffer
  try {
    seccomp = seccompFilterBytes(process.arch)
  } catch (error) {
    return { ok: false, reason: isHearthError(error) ? error.shortMessage : String(error) }
  }
  const detected = await detectCgroups(options.cgroups)
  if (!detected.ok) return { ok: false, reason: detected.reason }
  for (const path of readOnlyPaths) {
    if (!(await lstat(path).then(() => true, () => false))) return { ok: false, reason: `the read-only path ${path} does not exist` }
  }
  const installed = await Promise.all([...programs].map((program) => access(program, constants.X_OK).then(() => true, () => false)))
  if (!installed.includes(true)) {
    return { ok: false, reason: `none of the offered programs is installed: ${[...programs].join(', ') || '(none offered)'}` }
  }
  const setup: Setup = { bwrap, cgroups: detected.cgroups, seccomp, ...(await hostMounts(readOnlyPaths)) }

  // A trial sandbox: bwrap can be installed yet unusable (user namespaces disabled or restricted by AppArmor, cgroups
  // not writable by this user). Better to say so now than to fail every task.
  const trial = await trialRun(setup, options.maxProcesses)
  return trial === undefined ? { ok: true, setup } : { ok: false, reason: trial }
}

async function findBwrap(configured: string | undefined): Promise<string | undefined> {
  const candidates = configured !== undefined ? [configured] : (process.env.PATH ?? '/usr/bin:/bin').split(delimiter).filter(isAbsolute).map((dir) => join(dir, 'bwrap'))
  for (const candidate of candidates) {
    const info = await lstat(candidate).catch(() => undefined)
    if (info === undefined) continue
    if (await access(candidate, constants.X_OK).then(() => true, () => false)) return candidate
  }
  return undefined
}

/** Runs /usr/bin/true in a sandbox as a run would (cgroup, wrapper, seccomp filter): undefined when that works, else why not. */
async function trialRun(setup: Setup, maxProcesses: number): Promise<string | undefined> {
  const truePath = (await access('/usr/bin/true', constants.X_OK).then(() => true, () => false)) ? '/usr/bin/true' : undefined
  if (truePath === undefined) return undefined
  let cgroup: RunCgroup
  try {
    cgroup = await setup.cgroups.create({ memoryBytes: 64 << 20, cpuCores: 1, maxProcesses })
  } catch (error) {
    const cause = isHearthError(error) && error.cause instanceof Error ? error.cause : (error as Error)
    return `cannot create a cgroup v${setup.cgroups.version} under ${setup.cgroups.parents.join(', ')}: ${cause.message} (run as root, or delegate a cgroup to this user)`
  }
  try {
    const args = wrapperArgs(1, cgroup.procsFiles, setup.bwrap, [...baseSandboxArgs(setup), ...readOnlyRootArgs, '--json-status-fd', '3', truePath])
    const child = spawn('/bin/sh', args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], env: {}, cwd: '/' })
    feedSeccomp(child, setup.seccomp)
    const stderr: Buffer[] = []
    child.stderr?.on('data', (chunk: Buffer) => stderr.push(chunk))
    const statusText = collect(child)
    const code = await new Promise<number | null>((resolve) => {
      child.on('error', () => resolve(null))
      child.on('close', (exitCode) => resolve(exitCode))
    })
    const status = parseStatus(await statusText)
    if (code === 0 && status.childPid !== undefined) return undefined
    const message = Buffer.concat(stderr).toString('utf8').trim()
    if (code === 125) return `cannot put a process into the cgroups ${cgroup.procsFiles.join(', ')}: ${message}`
    return `bubblewrap (${setup.bwrap}) cannot create a sandbox here (exit code ${code}): ${message || 'no message'}; user namespaces may be disabled (sysctl kernel.unprivileged_userns_clone, or AppArmor's restrict_unprivileged_userns), or the kernel lacks seccomp filters (CONFIG_SECCOMP_FILTER)`
  } finally {
    await cgroup.killAll().catch(() => {})
    await cgroup.remove().catch(() => {})
  }
}
