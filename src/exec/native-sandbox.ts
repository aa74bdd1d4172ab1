/**
 * The native runtime's bubblewrap arguments: which namespaces a sandbox unshares and as whom the program runs, what of
 * the host it sees (read-only /usr and the top-level links or folders into it, the loader's /etc files, the provider's
 * read-only paths, the agreed GPUs), its env, and the task directory read-write at /task.
 */
import { lstat, readlink } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import { runtimeEnv } from './native-env.ts'
import type { RunSpec } from './runtime.ts'

/** The uid and gid the program runs as inside the sandbox (files it writes belong to the provider's user outside). */
const sandboxUid = '1000'
/** Top-level host entries that usually link into /usr (merged /usr) or hold libraries and tools themselves. */
const topLevelEntries = ['/bin', '/sbin', '/lib', '/lib32', '/lib64', '/libx32']
/** What the dynamic loader reads from /etc; alternatives resolves Debian's /usr/bin links (awk, editor, …). */
const etcEntries = ['/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/localtime', '/etc/alternatives']

/** The read-only host filesystem of every sandbox, found once. */
export interface HostMounts {
  /** bwrap arguments for the read-only host filesystem every run sees: /usr and its links, the loader's /etc files. */
  hostArgs: string[]
  /** bwrap arguments for the provider's read-only paths; mounted after /tmp, /proc and /dev, which would hide them. */
  extraArgs: string[]
  /** Host paths visible inside as they are (a program under one of them needs no extra bind). */
  visibleRoots: string[]
}

/** Looks at this host's top-level entries (merged /usr or not) and binds them, /usr, the loader's /etc files and `readOnlyPaths`. */
export async function hostMounts(readOnlyPaths: string[]): Promise<HostMounts> {
  const hostArgs: string[] = ['--ro-bind', '/usr', '/usr']
  const visibleRoots = ['/usr', ...readOnlyPaths]
  for (const entry of topLevelEntries) {
    const info = await lstat(entry).catch(() => undefined)
    if (info?.isSymbolicLink()) {
      // Merged /usr: keep the link (binding it would follow it), so /bin/sh inside is /usr/bin/sh as on the host.
      hostArgs.push('--symlink', await readlink(entry), entry)
      visibleRoots.push(entry)
    } else if (info?.isDirectory()) {
      hostArgs.push('--ro-bind', entry, entry)
      visibleRoots.push(entry)
    }
  }
  for (const entry of etcEntries) hostArgs.push('--ro-bind-try', entry, entry)
  const extraArgs = readOnlyPaths.flatMap((path) => ['--ro-bind', path, path])
  return { hostArgs, extraArgs, visibleRoots }
}

/** The sandbox every run shares: namespaces, identity, the read-only host filesystem, fresh /tmp, /proc and /dev. */
export function baseSandboxArgs(mounts: HostMounts): string[] {
  return [
    '--unshare-all',
    // --unshare-all only tries a user namespace; require it, so that --disable-userns and the uid mapping always apply.
    '--unshare-user',
    '--disable-userns',
    '--die-with-parent',
    '--new-session',
    '--cap-drop',
    'ALL',
    '--uid',
    sandboxUid,
    '--gid',
    sandboxUid,
    '--hostname',
    'hearth-task',
    // The filter on fd 4 (feedSeccomp, native-launch.ts), installed just before bwrap execs the program: bwrap's own
    // setup is not filtered.
    '--seccomp',
    '4',
    '--clearenv',
    ...mounts.hostArgs,
    '--tmpfs',
    '/tmp',
    '--proc',
    '/proc',
    '--dev',
    '/dev',
    ...mounts.extraArgs,
  ]
}

/** Last of the mounts (bwrap cannot make mount points on a read-only /): / itself is a tmpfs bwrap made writable. */
export const readOnlyRootArgs = ['--remount-ro', '/']

/** A run's (or a server's) sandbox: the shared one, the task's env, the program, its GPUs and the task directory at /task. */
export function sandboxArgs(mounts: HostMounts, spec: Pick<RunSpec<string>, 'program' | 'args' | 'env' | 'gpus'>, rootDir: string): string[] {
  // checkTaskEnv has passed spec.env: only allow-listed variables are in it.
  const env: Record<string, string> = { ...runtimeEnv, ...spec.env }
  const args = baseSandboxArgs(mounts)
  for (const [key, value] of Object.entries(env)) args.push('--setenv', key, value)
  const visible = mounts.visibleRoots.some((root) => spec.program === root || spec.program.startsWith(root + '/'))
  if (!visible) args.push('--ro-bind', spec.program, spec.program)
  args.push(...gpuSandboxArgs(spec.gpus ?? []))
  args.push('--bind', rootDir, '/task', ...readOnlyRootArgs, '--chdir', '/task', '--json-status-fd', '3', spec.program, ...spec.args.slice(1))
  return args
}

/** The NVIDIA driver's shared devices: every process that uses a GPU opens these besides the GPU's own /dev/nvidiaN. */
const nvidiaControlDevices = ['/dev/nvidiactl', '/dev/nvidia-uvm', '/dev/nvidia-uvm-tools', '/dev/nvidia-modeset']
/** Read-only host paths CUDA programs and nvidia-smi look at: the PCI devices' sysfs entries (the fresh /proc already shows /proc/driver/nvidia). */
const nvidiaHostPaths = ['/sys/bus/pci', '/sys/devices', '/sys/module/nvidia']

/**
 * bwrap arguments that make the agreed GPUs (indices as exec/gpu.ts detects them) visible in the sandbox and nothing
 * more: each GPU's device node, the driver's control devices, and read-only views of the driver's state. The sandbox's
 * /dev is otherwise bwrap's minimal one, so a run without GPUs sees no NVIDIA device at all. A GPU whose device node is
 * missing makes bwrap fail at its start, which the run reports as a failure rather than silently running on the CPU.
 */
export function gpuSandboxArgs(gpus: number[]): string[] {
  if (gpus.length === 0) return []
  const args: string[] = []
  for (const index of [...new Set(gpus)].sort((a, b) => a - b)) {
    if (!Number.isInteger(index) || index < 0 || index > 63) {
      throw new HearthError('HEARTH_ERR_EXEC_FAILED', `GPU index ${index} is not a GPU of this machine`, { hint: 'ask for GPUs by the indices the offer lists' })
    }
    args.push('--dev-bind', `/dev/nvidia${index}`, `/dev/nvidia${index}`)
  }
  for (const device of nvidiaControlDevices) args.push('--dev-bind-try', device, device)
  for (const path of nvidiaHostPaths) args.push('--ro-bind-try', path, path)
  return args
}
