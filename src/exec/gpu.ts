/**
 * Detects NVIDIA GPUs for the provider's offer (hearth.inf.gpu.*): model, memory, driver, count.
 *
 * nvidia-smi is asked first (it alone knows the memory size); where it is missing or fails (no userland tools in a
 * container, a driver/library version mismatch) the kernel driver's /proc/driver/nvidia files still name each GPU and
 * the driver version (on Linux; elsewhere nvidia-smi alone). No GPU, no driver: an empty list, never an error, since
 * most providers have none.
 */
import { execFile } from 'node:child_process'
import { constants } from 'node:fs'
import { access, readdir, readFile } from 'node:fs/promises'
import { delimiter, isAbsolute, join } from 'node:path'
import { hasLinuxKernelFiles } from './platform.ts'

export interface GpuInfo {
  /** 0-based, in the order the driver lists the GPUs. */
  index: number
  /** e.g. 'NVIDIA GeForce RTX 3090'. */
  model: string
  /** Total memory in MiB; undefined when only /proc was readable (it does not say). */
  memoryMib: number | undefined
  /** e.g. '535.104.05'; undefined when unknown. */
  driverVersion: string | undefined
  /** Where the facts came from. */
  source: 'nvidia-smi' | 'proc'
}

export interface GpuDetectOptions {
  /** The nvidia-smi binary; default: `nvidia-smi` on PATH. */
  nvidiaSmiPath?: string
  /** Instead of /proc/driver/nvidia (tests). */
  procDriverDir?: string
  /** nvidia-smi can hang when the driver is wedged; give up after this. Default 5000. */
  timeoutMs?: number
}

export const nvidiaSmiArgs = ['--query-gpu=name,memory.total,driver_version', '--format=csv,noheader,nounits']

/** Every NVIDIA GPU on this machine; [] when there is none (or no driver). */
export async function detectGpus(options: GpuDetectOptions = {}): Promise<GpuInfo[]> {
  const smi = options.nvidiaSmiPath ?? (await findOnPath('nvidia-smi'))
  if (smi !== undefined) {
    const output = await run(smi, nvidiaSmiArgs, options.timeoutMs ?? 5_000)
    if (output !== undefined) {
      const gpus = parseNvidiaSmi(output)
      if (gpus.length > 0) return gpus
    }
  }
  // The driver's files are Linux's; elsewhere nvidia-smi is all there is to ask.
  if (options.procDriverDir === undefined && !hasLinuxKernelFiles()) return []
  return readProcDriver(options.procDriverDir ?? '/proc/driver/nvidia')
}

/**
 * Parses `nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits`: one line per GPU,
 * `name, memoryMiB, driver`. Fields are taken from the right, as a model name could hold a comma; "[N/A]" and
 * "[Not Supported]" become undefined.
 */
export function parseNvidiaSmi(text: string): GpuInfo[] {
  const gpus: GpuInfo[] = []
  for (const line of text.split(/\r?\n/)) {
    const fields = line.split(',').map((field) => field.trim())
    if (fields.length < 3) continue
    const driver = fields.pop()!
    const memory = fields.pop()!
    const model = fields.join(', ')
    if (model === '') continue
    const memoryMib = /^\d+(\.\d+)?$/.test(memory) ? Math.round(Number(memory)) : undefined
    gpus.push({ index: gpus.length, model, memoryMib, driverVersion: known(driver), source: 'nvidia-smi' })
  }
  return gpus
}

/** Parses one /proc/driver/nvidia/gpus/<bus id>/information file ("Model: \t NVIDIA …" and other "Key: value" lines). */
export function parseProcGpuInformation(text: string): string | undefined {
  const match = /^Model:\s*(.+?)\s*$/m.exec(text)
  return match === null ? undefined : match[1]
}

/** The version in /proc/driver/nvidia/version ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  …"). */
export function parseProcDriverVersion(text: string): string | undefined {
  const line = /^NVRM version:.*$/m.exec(text)?.[0]
  return line === undefined ? undefined : /\s(\d+\.\d+(?:\.\d+)?)\s/.exec(line + ' ')?.[1]
}

async function readProcDriver(dir: string): Promise<GpuInfo[]> {
  const busIds = (await readdir(join(dir, 'gpus')).catch(() => [] as string[])).sort()
  if (busIds.length === 0) return []
  const driverVersion = parseProcDriverVersion(await readFile(join(dir, 'version'), 'utf8').catch(() => ''))
  const gpus: GpuInfo[] = []
  for (const busId of busIds) {
    const model = parseProcGpuInformation(await readFile(join(dir, 'gpus', busId, 'information'), 'utf8').catch(() => ''))
    gpus.push({ index: gpus.length, model: model ?? 'NVIDIA GPU', memoryMib: undefined, driverVersion, source: 'proc' })
  }
  return gpus
}

function known(value: string): string | undefined {
  return value === '' || /^\[.*\]$/.test(value) ? undefined : value
}

async function findOnPath(name: string): Promise<string | undefined> {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(isAbsolute)) {
    const path = join(dir, name)
    if (await access(path, constants.X_OK).then(() => true, () => false)) return path
  }
  return undefined
}

/** stdout of a successful run; undefined when it fails, times out or cannot start (treated as "no answer"). */
function run(file: string, args: string[], timeoutMs: number): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 1 << 20, encoding: 'utf8' }, (error, stdout) =>
      resolve(error === null ? stdout : undefined),
    )
  })
}
