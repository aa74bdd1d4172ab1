import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { detectGpus, parseNvidiaSmi, parseProcDriverVersion, parseProcGpuInformation } from './gpu.ts'

// Captured from real machines (nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits).
const twoGpus = 'NVIDIA GeForce RTX 3090, 24576, 535.104.05\nNVIDIA H100 80GB HBM3, 81559, 550.54.15\n'
const procInformation = [
  'Model: \t\t NVIDIA GeForce RTX 3090',
  'IRQ:   \t\t 139',
  'GPU UUID: \t GPU-5a1b2c3d-0000-1111-2222-333344445555',
  'Video BIOS: \t 94.02.42.00.a9',
  'Bus Type: \t PCIe',
  'DMA Size: \t 47 bits',
  'DMA Mask: \t 0x7fffffffffff',
  'Bus Location: \t 0000:01:00.0',
  'Device Minor: \t 0',
  'GPU Excluded:\t No',
].join('\n')
const procVersion = 'NVRM version: NVIDIA UNIX x86_64 Kernel Module  535.104.05  Sat Aug 19 01:15:15 UTC 2023\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n'
const procVersionOpen = 'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  550.54.15  Release Build  (dvs-builder@U16-I3-B03-4-3)  Tue Mar  5 22:15:33 UTC 2024\n'

let base: string

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-gpu-'))
})

after(async () => {
  await rm(base, { recursive: true, force: true })
})

// Captured on an NVIDIA H200 machine (driver 580.159.04, open kernel module) by scripts/gpu-check.ts.
const h200Smi = 'NVIDIA H200, 143771, 580.159.04\n'
const h200Information = 'Model: \t\t NVIDIA H200\nIRQ:   \t\t 41\nGPU UUID: \t GPU-cac7bdab-2cd3-da07-2fc7-2e2798681f24\nVideo BIOS: \t 96.00.a5.00.1a\nBus Type: \t PCIe\nDMA Size: \t 52 bits\nDMA Mask: \t 0xfffffffffffff\nBus Location: \t 0000:00:06.0\nDevice Minor: \t 0\nGPU Firmware: \t 580.159.04\nGPU Excluded:\t No\n'
const h200Version = 'NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.159.04  Release Build  (nixbld@)  \nGCC version:  gcc version 15.3.0 (GCC) \n'

describe('gpu', () => {
  it('reads what a real H200 machine reports, from nvidia-smi and from /proc', () => {
    assert.deepEqual(parseNvidiaSmi(h200Smi), [{ index: 0, model: 'NVIDIA H200', memoryMib: 143771, driverVersion: '580.159.04', source: 'nvidia-smi' }])
    assert.equal(parseProcGpuInformation(h200Information), 'NVIDIA H200')
    assert.equal(parseProcDriverVersion(h200Version), '580.159.04')
  })

  it('parses nvidia-smi output: model, memory MiB, driver, one entry per GPU', () => {
    assert.deepEqual(parseNvidiaSmi(twoGpus), [
      { index: 0, model: 'NVIDIA GeForce RTX 3090', memoryMib: 24576, driverVersion: '535.104.05', source: 'nvidia-smi' },
      { index: 1, model: 'NVIDIA H100 80GB HBM3', memoryMib: 81559, driverVersion: '550.54.15', source: 'nvidia-smi' },
    ])
    // a model name with a comma, a GPU that reports no memory size, CRLF line ends, blank lines
    assert.deepEqual(parseNvidiaSmi('Tesla K80, rev 2, [N/A], 470.82.01\r\n\r\n'), [
      { index: 0, model: 'Tesla K80, rev 2', memoryMib: undefined, driverVersion: '470.82.01', source: 'nvidia-smi' },
    ])
    assert.deepEqual(parseNvidiaSmi(''), [])
    assert.deepEqual(parseNvidiaSmi('NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver.\n'), [])
  })

  it('parses the kernel driver files in /proc/driver/nvidia', () => {
    assert.equal(parseProcGpuInformation(procInformation), 'NVIDIA GeForce RTX 3090')
    assert.equal(parseProcGpuInformation('IRQ: 5\n'), undefined)
    assert.equal(parseProcDriverVersion(procVersion), '535.104.05')
    assert.equal(parseProcDriverVersion(procVersionOpen), '550.54.15')
    assert.equal(parseProcDriverVersion(''), undefined)
  })

  it('finds nothing on a machine without NVIDIA GPUs (this one, for real)', async () => {
    assert.deepEqual(await detectGpus(), [])
  })

  it('asks nvidia-smi, and falls back to /proc when nvidia-smi fails', async () => {
    const smi = join(base, 'nvidia-smi')
    // checks that it is called with the documented query
    await writeFile(smi, `#!/bin/sh\n[ "$*" = "--query-gpu=name,memory.total,driver_version --format=csv,noheader,nounits" ] || exit 9\nprintf '%s' '${twoGpus}'\n`)
    await chmod(smi, 0o755)
    const gpus = await detectGpus({ nvidiaSmiPath: smi, procDriverDir: join(base, 'none') })
    assert.deepEqual(
      gpus.map((gpu) => [gpu.model, gpu.memoryMib]),
      [
        ['NVIDIA GeForce RTX 3090', 24576],
        ['NVIDIA H100 80GB HBM3', 81559],
      ],
    )

    const broken = join(base, 'nvidia-smi-broken')
    await writeFile(broken, '#!/bin/sh\necho "NVIDIA-SMI has failed because it couldn\'t communicate with the NVIDIA driver." >&2\nexit 9\n')
    await chmod(broken, 0o755)
    const proc = join(base, 'proc-nvidia')
    await mkdir(join(proc, 'gpus', '0000:01:00.0'), { recursive: true })
    await writeFile(join(proc, 'gpus', '0000:01:00.0', 'information'), procInformation)
    await writeFile(join(proc, 'version'), procVersion)
    assert.deepEqual(await detectGpus({ nvidiaSmiPath: broken, procDriverDir: proc }), [
      { index: 0, model: 'NVIDIA GeForce RTX 3090', memoryMib: undefined, driverVersion: '535.104.05', source: 'proc' },
    ])
    // a hung nvidia-smi is given up on (it never ends by itself: waiting for it would hang the test)
    const hung = join(base, 'nvidia-smi-hung')
    await writeFile(hung, '#!/bin/sh\nexec sleep 100000\n')
    await chmod(hung, 0o755)
    assert.equal((await detectGpus({ nvidiaSmiPath: hung, procDriverDir: proc, timeoutMs: 200 })).length, 1)
  })
})
