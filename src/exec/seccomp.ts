/**
 * The seccomp filter every native sandbox runs under, compiled here to classic BPF (no libseccomp) for bubblewrap's
 * `--seccomp FD`, which installs it just before it execs the program.
 *
 * What it refuses follows Docker's default profile (moby profiles/seccomp/default.json) for a container without
 * capabilities, turned around into a deny-list so that an ordinary program never meets a syscall Docker would allow:
 * - any ABI but the native one: the i386 entry (`int $0x80` from a 64-bit process) and x32 (numbers with bit
 *   0x40000000) reach other syscall tables that the rest of this filter does not check: EPERM;
 * - what Docker grants only with a capability or not at all (modules, kexec, mount and the new mount API, namespaces,
 *   keyrings, bpf, perf, NUMA policy, userfaultfd, quotas, clock setting, reboot, swap, …): EPERM;
 * - `clone` with any CLONE_NEW* flag: EPERM; `clone3`, whose flags sit in memory a filter cannot read: ENOSYS, so libc
 *   falls back to clone (as Docker does); `personality` other than the values Docker allows (no ADDR_NO_RANDOMIZE,
 *   READ_IMPLIES_EXEC, …): EPERM; `socket(AF_VSOCK)`, which no network namespace isolates: EPERM;
 * - stricter than Docker: ptrace and process_vm_readv/writev (Docker allows them on kernels >= 4.8) and io_uring (a large
 *   kernel surface that newer container profiles also block);
 * - a number above the newest syscall this table knows: ENOSYS, as an older kernel answers, so a future syscall is
 *   refused until it is looked at, and libc falls back.
 * Docker's allow-list also lets through clock_adjtime/adjtimex (read-only without CAP_SYS_TIME) and name_to_handle_at
 * (useless without open_by_handle_at); so does this filter.
 */
import { endianness } from 'node:os'
import { HearthError } from '../errors.ts'

/** Node's names (process.arch) for the architectures this filter knows. */
export type SeccompArch = 'x64' | 'arm64'

/** One `struct sock_filter`. */
export interface BpfInstruction {
  code: number
  jt: number
  jf: number
  k: number
}

/**
 * Syscall numbers, from the kernel's uapi headers (x86_64: asm/unistd_64.h; arm64: asm-generic/unistd.h). Numbers from
 * 425 on are the same on every architecture (the kernel's unified table since 5.1).
 */
const newerSyscalls: Readonly<Record<string, number>> = {
  io_uring_setup: 425,
  io_uring_enter: 426,
  io_uring_register: 427,
  open_tree: 428,
  move_mount: 429,
  fsopen: 430,
  fsconfig: 431,
  fsmount: 432,
  fspick: 433,
  clone3: 435,
  pidfd_getfd: 438,
  process_madvise: 440,
  mount_setattr: 442,
  quotactl_fd: 443,
  set_mempolicy_home_node: 450,
  open_tree_attr: 467,
}

const x64Numbers: Readonly<Record<string, number>> = {
  socket: 41,
  clone: 56,
  ptrace: 101,
  syslog: 103,
  uselib: 134,
  personality: 135,
  ustat: 136,
  sysfs: 139,
  vhangup: 153,
  pivot_root: 155,
  _sysctl: 156,
  chroot: 161,
  acct: 163,
  settimeofday: 164,
  mount: 165,
  umount2: 166,
  swapon: 167,
  swapoff: 168,
  reboot: 169,
  sethostname: 170,
  setdomainname: 171,
  iopl: 172,
  ioperm: 173,
  create_module: 174,
  init_module: 175,
  delete_module: 176,
  get_kernel_syms: 177,
  query_module: 178,
  quotactl: 179,
  nfsservctl: 180,
  getpmsg: 181,
  putpmsg: 182,
  afs_syscall: 183,
  tuxcall: 184,
  security: 185,
  lookup_dcookie: 212,
  clock_settime: 227,
  vserver: 236,
  mbind: 237,
  set_mempolicy: 238,
  get_mempolicy: 239,
  kexec_load: 246,
  add_key: 248,
  request_key: 249,
  keyctl: 250,
  migrate_pages: 256,
  unshare: 272,
  move_pages: 279,
  perf_event_open: 298,
  fanotify_init: 300,
  open_by_handle_at: 304,
  setns: 308,
  process_vm_readv: 310,
  process_vm_writev: 311,
  kcmp: 312,
  finit_module: 313,
  kexec_file_load: 320,
  bpf: 321,
  userfaultfd: 323,
  ...newerSyscalls,
}

const arm64Numbers: Readonly<Record<string, number>> = {
  lookup_dcookie: 18,
  umount2: 39,
  mount: 40,
  pivot_root: 41,
  nfsservctl: 42,
  chroot: 51,
  vhangup: 58,
  quotactl: 60,
  acct: 89,
  personality: 92,
  unshare: 97,
  kexec_load: 104,
  init_module: 105,
  delete_module: 106,
  clock_settime: 112,
  syslog: 116,
  ptrace: 117,
  reboot: 142,
  sethostname: 161,
  setdomainname: 162,
  settimeofday: 170,
  socket: 198,
  add_key: 217,
  request_key: 218,
  keyctl: 219,
  clone: 220,
  swapon: 224,
  swapoff: 225,
  mbind: 235,
  get_mempolicy: 236,
  set_mempolicy: 237,
  migrate_pages: 238,
  move_pages: 239,
  perf_event_open: 241,
  fanotify_init: 262,
  open_by_handle_at: 265,
  setns: 268,
  process_vm_readv: 270,
  process_vm_writev: 271,
  kcmp: 272,
  finit_module: 273,
  bpf: 280,
  userfaultfd: 282,
  kexec_file_load: 294,
  ...newerSyscalls,
}

/**
 * Refused with EPERM wherever the architecture has them (some exist only on x86_64). Grouped as Docker's profile
 * reasons about them: what it grants only with a capability the sandbox never has, and what it never lists.
 */
export const deniedSyscalls: readonly string[] = [
  // CAP_SYS_ADMIN: mounts (old and new API), namespaces, fanotify, quotas, perf, lookup_dcookie, hostnames, syslog
  'mount', 'umount2', 'pivot_root', 'open_tree', 'open_tree_attr', 'move_mount', 'fsopen', 'fsconfig', 'fsmount', 'fspick',
  'mount_setattr', 'unshare', 'setns', 'fanotify_init', 'quotactl', 'quotactl_fd', 'lookup_dcookie', 'sethostname',
  'setdomainname', 'syslog', 'bpf', 'perf_event_open',
  // CAP_SYS_MODULE, CAP_SYS_BOOT, CAP_SYS_PACCT, CAP_SYS_CHROOT, CAP_SYS_TTY_CONFIG, CAP_SYS_RAWIO, CAP_SYS_TIME
  'init_module', 'finit_module', 'delete_module', 'reboot', 'acct', 'chroot', 'vhangup', 'iopl', 'ioperm', 'settimeofday',
  'clock_settime',
  // CAP_SYS_PTRACE (kcmp, pidfd_getfd, process_madvise); ptrace and process_vm_* too, stricter than Docker
  'kcmp', 'pidfd_getfd', 'process_madvise', 'ptrace', 'process_vm_readv', 'process_vm_writev',
  // CAP_SYS_NICE: NUMA memory policy
  'mbind', 'set_mempolicy', 'get_mempolicy', 'set_mempolicy_home_node', 'migrate_pages', 'move_pages',
  // CAP_DAC_READ_SEARCH: opening any inode by handle (the "shocker" escape)
  'open_by_handle_at',
  // never allowed: kexec, swap, kernel keyrings (not namespaced), userfaultfd (a tool for kernel races), obsolete calls
  'kexec_load', 'kexec_file_load', 'swapon', 'swapoff', 'add_key', 'request_key', 'keyctl', 'userfaultfd', 'uselib',
  'ustat', 'sysfs', '_sysctl', 'create_module', 'get_kernel_syms', 'query_module', 'nfsservctl', 'getpmsg', 'putpmsg',
  'afs_syscall', 'tuxcall', 'security', 'vserver',
  // stricter than Docker: io_uring
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
]

interface ArchSpec {
  /** AUDIT_ARCH_* as seccomp_data.arch reports it for this ABI. */
  auditArch: number
  numbers: Readonly<Record<string, number>>
  /** x86_64 kernels also take x32 syscalls, reported under the same arch with this bit in the number. */
  x32Bit?: number
}

const archSpecs: Record<SeccompArch, ArchSpec> = {
  // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
  x64: { auditArch: 0xc000003e, numbers: x64Numbers, x32Bit: 0x40000000 },
  // EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
  arm64: { auditArch: 0xc00000b7, numbers: arm64Numbers },
}

/** The newest syscall number this table has looked at (Linux 6.17: file_setattr; both arches share numbers from 403). */
export const highestKnownSyscall = 469

// Linux's seccomp and BPF constants (linux/seccomp.h, linux/filter.h, asm-generic/errno-base.h).
export const SECCOMP_RET_ALLOW = 0x7fff0000
export const SECCOMP_RET_ERRNO = 0x00050000
export const EPERM = 1
export const ENOSYS = 38
const BPF_LD_W_ABS = 0x20
const BPF_JMP_JA = 0x05
const BPF_JEQ_K = 0x15
const BPF_JGT_K = 0x25
const BPF_JGE_K = 0x35
const BPF_JSET_K = 0x45
const BPF_RET_K = 0x06
/** Offsets in struct seccomp_data: int nr; __u32 arch; __u64 instruction_pointer; __u64 args[6]. */
const offsetNr = 0
const offsetArch = 4
const offsetArgLow = (index: number): number => 16 + 8 * index
/** CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET: Docker's mask. */
export const cloneNamespaceFlags = 0x7e020000
/** personality() values Docker allows: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and 0xffffffff (query). */
export const allowedPersonalities: readonly number[] = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff]
const AF_VSOCK = 40

type Target = string | 'next'
type Step =
  | { op: 'label'; name: string }
  | { op: 'load'; offset: number }
  | { op: 'jump'; code: number; k: number; ifTrue: Target; ifFalse: Target }
  | { op: 'goto'; target: string }
  | { op: 'return'; k: number }

/** The filter for an architecture as BPF instructions (exported for tests, which run them in a small interpreter). */
export function seccompProgram(arch: SeccompArch): BpfInstruction[] {
  const spec = archSpecs[arch]
  const number = (name: string): number => {
    const value = spec.numbers[name]
    if (value === undefined) throw new Error(`seccomp: no ${arch} number for ${name}`)
    return value
  }
  const jeq = (k: number, ifTrue: Target, ifFalse: Target = 'next'): Step => ({ op: 'jump', code: BPF_JEQ_K, k, ifTrue, ifFalse })
  const denied = [...new Set(deniedSyscalls.filter((name) => spec.numbers[name] !== undefined).map((name) => spec.numbers[name]!))].sort((a, b) => a - b)
  const steps: Step[] = [
    { op: 'load', offset: offsetArch },
    jeq(spec.auditArch, 'next', 'eperm'),
    { op: 'load', offset: offsetNr },
    ...(spec.x32Bit === undefined ? [] : [{ op: 'jump', code: BPF_JGE_K, k: spec.x32Bit, ifTrue: 'eperm', ifFalse: 'next' } as const]),
    { op: 'jump', code: BPF_JGT_K, k: highestKnownSyscall, ifTrue: 'enosys', ifFalse: 'next' },
    jeq(number('clone'), 'clone'),
    jeq(number('clone3'), 'enosys'),
    jeq(number('personality'), 'personality'),
    jeq(number('socket'), 'socket'),
    ...denied.map((nr) => jeq(nr, 'eperm')),
    { op: 'goto', target: 'allow' },

    { op: 'label', name: 'clone' },
    { op: 'load', offset: offsetArgLow(0) },
    { op: 'jump', code: BPF_JSET_K, k: cloneNamespaceFlags, ifTrue: 'eperm', ifFalse: 'allow' },

    { op: 'label', name: 'personality' },
    { op: 'load', offset: offsetArgLow(0) },
    ...allowedPersonalities.map((value) => jeq(value, 'allow')),
    { op: 'goto', target: 'eperm' },

    { op: 'label', name: 'socket' },
    { op: 'load', offset: offsetArgLow(0) },
    jeq(AF_VSOCK, 'eperm', 'allow'),

    { op: 'label', name: 'allow' },
    { op: 'return', k: SECCOMP_RET_ALLOW },
    { op: 'label', name: 'eperm' },
    { op: 'return', k: SECCOMP_RET_ERRNO | EPERM },
    { op: 'label', name: 'enosys' },
    { op: 'return', k: SECCOMP_RET_ERRNO | ENOSYS },
  ]
  return assemble(steps)
}

/** Resolves labels into relative jumps; a conditional jump reaches at most 255 instructions ahead. */
function assemble(steps: Step[]): BpfInstruction[] {
  const labels = new Map<string, number>()
  let index = 0
  for (const step of steps) {
    if (step.op === 'label') labels.set(step.name, index)
    else index++
  }
  const instructions: BpfInstruction[] = []
  const offset = (target: Target, at: number, limit: number): number => {
    if (target === 'next') return 0
    const to = labels.get(target)
    if (to === undefined) throw new Error(`seccomp: no label ${target}`)
    const distance = to - (at + 1)
    if (distance < 0 || distance > limit) throw new Error(`seccomp: jump to ${target} out of range (${distance})`)
    return distance
  }
  for (const step of steps) {
    const at = instructions.length
    switch (step.op) {
      case 'label':
        break
      case 'load':
        instructions.push({ code: BPF_LD_W_ABS, jt: 0, jf: 0, k: step.offset })
        break
      case 'jump':
        instructions.push({ code: step.code, jt: offset(step.ifTrue, at, 255), jf: offset(step.ifFalse, at, 255), k: step.k >>> 0 })
        break
      case 'goto':
        instructions.push({ code: BPF_JMP_JA, jt: 0, jf: 0, k: offset(step.target, at, 0xffffffff) })
        break
      case 'return':
        instructions.push({ code: BPF_RET_K, jt: 0, jf: 0, k: step.k >>> 0 })
        break
    }
  }
  return instructions
}

/** The architectures this filter knows, or undefined: the native runtime is then unavailable rather than unfiltered. */
export function seccompArchOf(arch: string = process.arch): SeccompArch | undefined {
  return arch === 'x64' || arch === 'arm64' ? arch : undefined
}

/** The filter as bytes (an array of struct sock_filter in host order), what `bwrap --seccomp FD` reads. */
export function seccompFilterBytes(arch: string = process.arch): Buffer {
  const known = seccompArchOf(arch)
  // Both known arches are little-endian; a big-endian host would also need the other half of each argument.
  if (known === undefined || endianness() !== 'LE') {
    throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `the native sandbox has no seccomp filter for ${arch} (${endianness()})`, {
      hint: 'run native tasks on x86_64 or arm64 Linux, or do not offer the native runtime',
    })
  }
  const program = seccompProgram(known)
  const bytes = Buffer.alloc(program.length * 8)
  program.forEach((instruction, i) => {
    bytes.writeUInt16LE(instruction.code, i * 8)
    bytes.writeUInt8(instruction.jt, i * 8 + 2)
    bytes.writeUInt8(instruction.jf, i * 8 + 3)
    bytes.writeUInt32LE(instruction.k, i * 8 + 4)
  })
  return bytes
}

/** Syscall numbers this module uses, per arch (for tests that check them against the kernel headers). */
export function syscallNumbers(arch: SeccompArch): Readonly<Record<string, number>> {
  return archSpecs[arch].numbers
}

/** The AUDIT_ARCH value seccomp reports for the native ABI of an arch. */
export function auditArchOf(arch: SeccompArch): number {
  return archSpecs[arch].auditArch
}
