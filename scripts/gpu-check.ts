/**
 * `node --import tsx scripts/gpu-check.ts NVIDIA_SMI [PYTHON] [READ_ONLY_PATHS]`: the GPU check for a machine with an
 * NVIDIA GPU, which CI machines lack. It prints what exec/gpu.ts detects, then runs `nvidia-smi -L` (and, given a
 * Python with PyTorch, a CUDA matrix product) in the native runtime's sandbox twice: with GPU 0 granted, where the
 * program must see the GPU, and without, where it must not. READ_ONLY_PATHS (colon-separated) are bound read-only,
 * e.g. `/opt:/usr/local/nvidia` where the driver and Python live outside /usr. HEARTH_CGROUP_PARENT names a delegated
 * cgroup v2 folder when this process's own cgroup does not offer the cpu, memory and pids controllers.
 * Exits 1 when a check fails.
 */
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { detectGpus } from '../src/exec/gpu.ts'
import { createNativeRuntime } from '../src/exec/native-runtime.ts'

const [smi, python, readOnly = ''] = process.argv.slice(2)
if (smi === undefined) {
  console.error('usage: scripts/gpu-check.ts NVIDIA_SMI [PYTHON] [READ_ONLY_PATHS]')
  process.exit(2)
}
const gpus = await detectGpus()
console.log('detected:', JSON.stringify(gpus))
if (gpus.length === 0) {
  console.error('no NVIDIA GPU detected: nothing to check on this machine')
  process.exit(1)
}
const cgroupParent = process.env.HEARTH_CGROUP_PARENT
const runtime = createNativeRuntime({
  programs: [smi, ...(python === undefined || python === '' ? [] : [python])],
  readOnlyPaths: readOnly.split(':').filter((path) => path !== ''),
  ...(cgroupParent === undefined ? {} : { cgroups: { v2Parent: cgroupParent } }),
})
const availability = await runtime.available()
if (!availability.ok) {
  console.error(`the native runtime cannot run here: ${availability.reason}`)
  process.exit(1)
}

async function sandboxed(program: string, args: string[], granted: number[]): Promise<{ exitCode: number; stdout: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-gpu-check-'))
  try {
    await mkdir(join(dir, 'root'))
    const spec = { program, args: [program, ...args], env: {}, rootDir: join(dir, 'root'), stdoutPath: join(dir, 'stdout'), stderrPath: join(dir, 'stderr') }
    const result = await runtime.run({ ...spec, maxMemoryBytes: 8 * 2 ** 30, timeoutMs: 120_000, maxOutputBytes: 2 ** 20, gpus: granted })
    return { exitCode: result.exitCode, stdout: await readFile(spec.stdoutPath, 'utf8') }
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

const failures: string[] = []
function check(label: string, ok: boolean, seen: string): void {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${label}: ${seen.trim().replaceAll('\n', ' | ')}`)
  if (!ok) failures.push(label)
}
const withGpu = await sandboxed(smi, ['-L'], [0])
check('nvidia-smi sees GPU 0 when granted', withGpu.exitCode === 0 && /GPU 0:/.test(withGpu.stdout), withGpu.stdout)
const withoutGpu = await sandboxed(smi, ['-L'], [])
check('nvidia-smi sees no GPU when none is granted', withoutGpu.exitCode !== 0 || !/GPU 0:/.test(withoutGpu.stdout), withoutGpu.stdout)
if (python !== undefined && python !== '') {
  const code = 'import torch\nok = torch.cuda.is_available()\nprint("cuda", ok)\nif ok:\n  x = torch.ones(1024, 1024, device="cuda")\n  print(torch.cuda.get_device_name(0), int((x @ x).sum()))'
  const torchWith = await sandboxed(python, ['-c', code], [0])
  check('CUDA computes when granted', torchWith.stdout.includes(String(1024 ** 3)), torchWith.stdout)
  const torchWithout = await sandboxed(python, ['-c', code], [])
  check('CUDA is absent when none is granted', torchWithout.stdout.includes('cuda False'), torchWithout.stdout)
}
await runtime.close()
process.exit(failures.length === 0 ? 0 : 1)
