// The seccomp generator, checked by running its BPF in a small interpreter (the kernel's classic-BPF rules for seccomp:
// aligned 32-bit loads inside struct seccomp_data, forward jumps only, a return at the end) and its syscall numbers
// against the kernel headers where they are installed. native-runtime.test.ts checks the filter for real.
import assert from 'node:assert/strict'
import { readFileSync } from 'node:fs'
import { describe, it } from 'node:test'
import {
  allowedPersonalities,
  auditArchOf,
  cloneNamespaceFlags,
  deniedSyscalls,
  ENOSYS,
  EPERM,
  highestKnownSyscall,
  SECCOMP_RET_ALLOW,
  SECCOMP_RET_ERRNO,
  seccompFilterBytes,
  seccompProgram,
  syscallNumbers,
} from './seccomp.ts'
import type { BpfInstruction, SeccompArch } from './seccomp.ts'

const AUDIT_ARCH_I386 = 0x40000003
const AUDIT_ARCH_ARM = 0x40000028
const allow = SECCOMP_RET_ALLOW
const eperm = SECCOMP_RET_ERRNO | EPERM
const enosys = SECCOMP_RET_ERRNO | ENOSYS

/** Numbers the tests call that the filter does not name (checked against the same headers below). */
const allowedNumbers: Record<SeccompArch, Record<string, number>> = {
  x64: { getpid: 39, adjtimex: 159, name_to_handle_at: 303, clock_adjtime: 305 },
  arm64: { getpid: 172, adjtimex: 171, name_to_handle_at: 264, clock_adjtime: 266 },
}
const getpid: Record<SeccompArch, number> = { x64: allowedNumbers.x64.getpid!, arm64: allowedNumbers.arm64.getpid! }

interface Call {
  nr: number
  arch: number
  args?: bigint[]
}

/** Runs a seccomp BPF program on one syscall, as the kernel would; throws on anything the kernel's checker refuses. */
function interpret(program: BpfInstruction[], call: Call): number {
  const data = Buffer.alloc(64)
  data.writeInt32LE(call.nr, 0)
  data.writeUInt32LE(call.arch, 4)
  ;(call.args ?? []).forEach((arg, i) => data.writeBigUInt64LE(BigInt.asUintN(64, arg), 16 + 8 * i))
  let accumulator = 0
  for (let pc = 0; pc < program.length; ) {
    const { code, jt, jf, k } = program[pc]!
    switch (code) {
      case 0x20: // ld [k]
        assert.ok(k % 4 === 0 && k + 4 <= 64, `misaligned or out-of-range load at ${pc}: ${k}`)
        accumulator = data.readUInt32LE(k)
        pc++
        break
      case 0x05: // ja k
        pc += 1 + k
        break
      case 0x15: // jeq k
        pc += 1 + (accumulator === k ? jt : jf)
        break
      case 0x25: // jgt k (unsigned)
        pc += 1 + (accumulator > k ? jt : jf)
        break
      case 0x35: // jge k (unsigned)
        pc += 1 + (accumulator >= k ? jt : jf)
        break
      case 0x45: // jset k
        pc += 1 + ((accumulator & k) !== 0 ? jt : jf)
        break
      case 0x06: // ret k
        return k
      default:
        assert.fail(`unknown BPF opcode 0x${code.toString(16)} at ${pc}`)
    }
  }
  return assert.fail('the program ran off its end without returning')
}

/** The kernel's static checks: known opcodes, 8-bit conditional offsets, every jump inside the program, a return last. */
function assertValidProgram(program: BpfInstruction[]): void {
  assert.ok(program.length > 0 && program.length <= 4096)
  program.forEach(({ code, jt, jf, k }, pc) => {
    assert.ok([0x20, 0x05, 0x15, 0x25, 0x35, 0x45, 0x06].includes(code), `opcode 0x${code.toString(16)}`)
    assert.ok(jt >= 0 && jt <= 255 && jf >= 0 && jf <= 255)
    assert.ok(k >= 0 && k <= 0xffffffff)
    if (code === 0x05) assert.ok(pc + 1 + k < program.length, `ja out of range at ${pc}`)
    else if (code !== 0x20 && code !== 0x06) assert.ok(pc + 1 + Math.max(jt, jf) < program.length, `jump out of range at ${pc}`)
  })
  assert.equal(program.at(-1)!.code, 0x06, 'the last instruction returns')
}

/** `#define __NR_name number` lines of a uapi header; `__NR3264_x` (asm-generic) counts as x. */
function headerNumbers(path: string): Map<string, number> | undefined {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch {
    return undefined
  }
  const numbers = new Map<string, number>()
  for (const match of text.matchAll(/^#define __NR(?:3264)?_([a-z0-9_]+)\s+(\d+)\s*$/gm)) numbers.set(match[1]!, Number(match[2]))
  return numbers
}

for (const arch of ['x64', 'arm64'] as const) {
  describe(`seccomp filter (${arch})`, () => {
    const program = seccompProgram(arch)
    const numbers = syscallNumbers(arch)
    const native = auditArchOf(arch)
    const run = (nr: number, args: bigint[] = [], auditArch = native): number => interpret(program, { nr, arch: auditArch, args })

    it('is a program the kernel accepts', () => {
      assertValidProgram(program)
    })

    it('allows ordinary syscalls, refuses each denied one with EPERM', () => {
      assert.equal(run(getpid[arch]), allow)
      assert.equal(run(0), allow)
      for (const name of deniedSyscalls) {
        const nr = numbers[name]
        if (nr === undefined) continue
        assert.equal(run(nr), eperm, name)
      }
      for (const name of ['ptrace', 'keyctl', 'unshare', 'mount', 'bpf', 'setns', 'init_module', 'kexec_load', 'userfaultfd', 'open_by_handle_at']) {
        assert.equal(run(numbers[name]!), eperm, name)
      }
    })

    it('allows what Docker\'s profile allows without capabilities: clock_adjtime and adjtimex (read-only then), name_to_handle_at', () => {
      for (const [name, nr] of Object.entries(allowedNumbers[arch])) assert.equal(run(nr), allow, name)
    })

    it('refuses every ABI but the native one, whatever the number', () => {
      for (const other of [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, native === auditArchOf('x64') ? auditArchOf('arm64') : auditArchOf('x64')]) {
        assert.equal(run(20, [], other), eperm, `arch 0x${other.toString(16)}`)
        assert.equal(run(getpid[arch], [], other), eperm)
      }
    })

    it('clone: without namespace flags allowed, with any of them EPERM; clone3 ENOSYS so libc falls back', () => {
      const clone = numbers.clone!
      const threadFlags = 0x3d0f00n // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM|SETTLS|PARENT_SETTID|CHILD_CLEARTID
      assert.equal(run(clone, [threadFlags]), allow)
      assert.equal(run(clone, [17n]), allow, 'fork: SIGCHLD only')
      for (const flag of [0x20000n, 0x2000000n, 0x4000000n, 0x8000000n, 0x10000000n, 0x20000000n, 0x40000000n]) {
        assert.equal(run(clone, [flag | 17n]), eperm, `flag 0x${flag.toString(16)}`)
      }
      assert.equal(BigInt(cloneNamespaceFlags), 0x20000n | 0x2000000n | 0x4000000n | 0x8000000n | 0x10000000n | 0x20000000n | 0x40000000n)
      assert.equal(run(numbers.clone3!, [0n, 88n]), enosys)
    })

    it('personality: only the values Docker allows', () => {
      for (const value of allowedPersonalities) assert.equal(run(numbers.personality!, [BigInt(value)]), allow, `0x${value.toString(16)}`)
      // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, PER_SVR4
      for (const value of [0x40000n, 0x400000n, 0x68000001n]) assert.equal(run(numbers.personality!, [value]), eperm, `0x${value.toString(16)}`)
    })

    it('socket: any family but AF_VSOCK', () => {
      assert.equal(run(numbers.socket!, [2n, 1n]), allow, 'AF_INET')
      assert.equal(run(numbers.socket!, [1n, 1n]), allow, 'AF_UNIX')
      assert.equal(run(numbers.socket!, [40n, 1n]), eperm, 'AF_VSOCK')
    })

    it('answers ENOSYS above the newest syscall it knows', () => {
      assert.equal(run(highestKnownSyscall), allow)
      assert.equal(run(highestKnownSyscall + 1), enosys)
      assert.equal(run(1000), enosys)
    })

    it('encodes struct sock_filter in host order', () => {
      const bytes = seccompFilterBytes(arch)
      assert.equal(bytes.length, program.length * 8)
      assert.equal(bytes.readUInt16LE(0), program[0]!.code)
      assert.equal(bytes.readUInt32LE(program.length * 8 - 4), program.at(-1)!.k)
    })
  })
}

describe('seccomp filter, x86_64 only', () => {
  const program = seccompProgram('x64')
  const x64 = auditArchOf('x64')

  it('refuses the x32 ABI (bit 0x40000000 in the number) and negative numbers with EPERM', () => {
    assert.equal(interpret(program, { nr: 0x40000000 | 39, arch: x64 }), eperm)
    assert.equal(interpret(program, { nr: 0x40000000 | 101, arch: x64 }), eperm)
    assert.equal(interpret(program, { nr: -1, arch: x64 }), eperm)
  })

  it('refuses the x86_64-only legacy calls', () => {
    const numbers = syscallNumbers('x64')
    for (const name of ['iopl', 'ioperm', 'uselib', 'ustat', 'sysfs', '_sysctl', 'create_module', 'query_module']) {
      assert.equal(interpret(program, { nr: numbers[name]!, arch: x64 }), eperm, name)
    }
  })

  it('knows no architecture it cannot filter: no filter, not an open one', () => {
    assert.throws(() => seccompFilterBytes('ia32'), /no seccomp filter for ia32/)
    assert.throws(() => seccompFilterBytes('riscv64'), /no seccomp filter/)
  })
})

describe('seccomp syscall numbers', () => {
  it('names only syscalls that have a number on x86_64, and every denied one there', () => {
    const numbers = syscallNumbers('x64')
    for (const name of deniedSyscalls) assert.ok(numbers[name] !== undefined, `${name} has no x86_64 number`)
  })

  // The headers come with libc6-dev (Debian linux-libc-dev), which the real test's gcc needs too.
  it('match the kernel headers: x86_64 asm/unistd_64.h and arm64 asm-generic/unistd.h', () => {
    const x64 = headerNumbers('/usr/include/x86_64-linux-gnu/asm/unistd_64.h') ?? headerNumbers('/usr/include/asm/unistd_64.h')
    const generic = headerNumbers('/usr/include/asm-generic/unistd.h')
    assert.ok(x64 !== undefined || generic !== undefined, 'no kernel headers under /usr/include: install the Debian packages libc6-dev and linux-libc-dev')
    let checked = 0
    for (const [arch, header] of [['x64', x64], ['arm64', generic]] as const) {
      if (header === undefined) continue
      const highest = Math.max(...header.values())
      for (const [name, nr] of Object.entries(syscallNumbers(arch))) {
        const expected = header.get(name)
        // Headers older than the syscall (open_tree_attr is Linux 6.15) do not list it; nothing may take its number.
        if (expected === undefined) {
          assert.ok(nr > highest, `${arch} ${name}: ${nr} is not in the header, yet not above its highest number ${highest}`)
          continue
        }
        assert.equal(nr, expected, `${arch} ${name}`)
        checked++
      }
      for (const [name, nr] of Object.entries(allowedNumbers[arch])) assert.equal(header.get(name), nr, `${arch} ${name}`)
    }
    assert.ok(checked > 50, `${checked} numbers checked`)
  })
})
