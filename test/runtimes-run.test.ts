/**
 * Real programs nobody on the team wrote, run by providers through `hearth run` and compared with running them here:
 * POV-Ray (native, a frame split into row ranges) and busybox in a container image sent as an archive (docker).
 */
import assert from 'node:assert/strict'
import { spawnSync } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { runJobFile } from '../src/cli/run-job.ts'
import { createDockerRuntime } from '../src/exec/docker-runtime.ts'
import { saveImageArchive } from '../src/exec/docker-images.ts'
import { busyboxPath, importBusyboxImage, startTestEngine } from '../src/exec/docker-test-image.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-runtimes-'))
after(() => rm(dir, { recursive: true, force: true }))

/** The raster of a binary PPM (P6) with 8-bit samples: the header holds a date, so whole files never match. */
function ppmPixels(bytes: Buffer): { width: number; height: number; pixels: Buffer } {
  const header = bytes.subarray(0, 200).toString('latin1')
  const match = /^P6\s+(?:#[^\n]*\n\s*)*(\d+)\s+(\d+)\s+(\d+)\s/.exec(header)
  assert.ok(match !== null, 'a binary PPM')
  const width = Number(match[1])
  const height = Number(match[2])
  return { width, height, pixels: bytes.subarray(bytes.length - width * height * 3) }
}

test('POV-Ray on providers\' native runtime: row ranges stitch into the same pixels as one render here', async () => {
  const example = fileURLToPath(new URL('../examples/povray/', import.meta.url))
  const out = join(dir, 'povray')
  const report = await runJobFile({ jobFile: join(example, 'job.json'), outDir: out, providers: 2, nativePrograms: { povray: '/usr/bin/povray' } })
  assert.deepEqual(report.failures, [])
  assert.deepEqual(report.tasks, { total: 3, succeeded: 3 })

  const local = join(dir, 'local')
  spawnSync('mkdir', ['-p', local])
  const whole = spawnSync('/usr/bin/povray', [`+I${join(example, 'scene.pov')}`, `+O${join(local, 'whole.ppm')}`, '+FP', '+W192', '+H144', '-D', '-P'], { encoding: 'utf8' })
  assert.equal(whole.status, 0, whole.stderr)
  const expected = ppmPixels(await readFile(join(local, 'whole.ppm')))
  const job = JSON.parse(await readFile(join(example, 'job.json'), 'utf8')) as { tasks: { args: string[] }[] }
  const rowBytes = expected.width * 3
  const stitched = Buffer.alloc(expected.pixels.length)
  for (let i = 0; i < job.tasks.length; i++) {
    const first = Number(job.tasks[i]!.args.find((a) => a.startsWith('+SR'))!.slice(3))
    const last = Number(job.tasks[i]!.args.find((a) => a.startsWith('+ER'))!.slice(3))
    const part = ppmPixels(await readFile(join(out, String(i), 'out', 'part.ppm')))
    // A row-range render may hold just its rows or the whole frame; take its rows either way.
    const offset = part.height === expected.height ? (first - 1) * rowBytes : 0
    part.pixels.copy(stitched, (first - 1) * rowBytes, offset, offset + (last - first + 1) * rowBytes)
  }
  assert.ok(stitched.equals(expected.pixels), 'the stitched rows differ from the whole render')
})

test('busybox in a container image sent as an archive gives the same bytes as running it here', async () => {
  const engine = await startTestEngine(join(dir, 'engine'))
  after(() => engine.stop())
  const docker = createDockerRuntime({ socketPath: engine.socketPath })
  after(() => docker.close())
  const imageId = await importBusyboxImage(docker, join(dir, 'rootfs'))
  const archive = join(dir, 'busybox.tar')
  await saveImageArchive(docker, imageId, archive)
  // Gone from the engine, so the provider must fetch the archive from the requestor and load it.
  await docker.api.json({ method: 'DELETE', path: `/images/${imageId}?force=true` }, 'remove the image')
  assert.equal(await docker.hasImage(imageId), false)

  const text = Array.from({ length: 500 }, (_, i) => `line ${i} ${(i * 7919) % 1000} hearth`).join('\n') + '\n'
  await writeFile(join(dir, 'data.txt'), text)
  const script = 'sort -n -k3 in/data.txt | md5sum > out/sorted.md5; wc -w < in/data.txt > out/words.txt'
  await writeFile(join(dir, 'docker-job.json'), JSON.stringify({
    name: 'busybox', runtime: 'docker', image: './busybox.tar',
    tasks: [{ args: ['sh', '-c', script], inputs: { '/in/data.txt': './data.txt' }, outputs: ['/out/sorted.md5', '/out/words.txt'] }],
  }))
  const report = await runJobFile({ jobFile: join(dir, 'docker-job.json'), outDir: join(dir, 'docker-out'), providers: 1, dockerSocket: engine.socketPath, nativePrograms: {} })
  assert.deepEqual(report.failures, [])
  assert.deepEqual(report.tasks, { total: 1, succeeded: 1 })

  const here = spawnSync(busyboxPath, ['sh', '-c', script.replace(/in\/data\.txt/g, join(dir, 'data.txt')).replace(/out\//g, `${dir}/here-`)], { encoding: 'utf8' })
  assert.equal(here.status, 0, here.stderr)
  assert.equal(await readFile(join(dir, 'docker-out', '0', 'out', 'sorted.md5'), 'utf8'), await readFile(join(dir, 'here-sorted.md5'), 'utf8'))
  assert.equal(await readFile(join(dir, 'docker-out', '0', 'out', 'words.txt'), 'utf8'), await readFile(join(dir, 'here-words.txt'), 'utf8'))
  assert.equal(await docker.hasImage(imageId), true)
})
