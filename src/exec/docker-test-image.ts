/**
 * The image the docker tests run: Debian's static busybox (package `busybox-static`) and its applet links in an
 * otherwise empty root filesystem, imported through the Engine API — all local, no registry. A real program nobody on
 * the team wrote, small enough (~2 MiB) to import in a fraction of a second.
 *
 * The image has an /etc/passwd naming its user (uid 1000, the container user), readable by root only, as minimal
 * images do: podman writes an /etc/passwd entry into a read-only container for a numeric user its image does not
 * name, which would make the file readable; naming the user keeps podman from adding anything (see the report in
 * docker-runtime.compliance.test.ts).
 */
import { execFileSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { chmod, copyFile, mkdir, readFile, symlink, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { importRootfsArchive } from './docker-images.ts'
import { createDockerRuntime, defaultDockerSocket } from './docker-runtime.ts'
import type { DockerRuntime } from './docker-runtime.ts'
import { podmanPackages, startPodmanService } from './podman-service.ts'

export const busyboxPath = '/bin/busybox'
export const busyboxPackage = 'busybox-static'

/** Whether an ELF binary is statically linked: it has no PT_INTERP program header (no dynamic loader). */
export async function isStaticElf(path: string): Promise<boolean> {
  const elf = await readFile(path)
  if (elf.length < 64 || elf.readUInt32BE(0) !== 0x7f454c46 || elf[4] !== 2) return false
  const phoff = Number(elf.readBigUInt64LE(32))
  const phentsize = elf.readUInt16LE(54)
  const phnum = elf.readUInt16LE(56)
  for (let i = 0; i < phnum; i++) if (elf.readUInt32LE(phoff + i * phentsize) === 3) return false
  return true
}

/**
 * Builds the busybox root filesystem tarball in `dir` and returns its path. Throws naming the package when absent.
 * A `variant` adds /etc/hearth-variant holding it: another image (another layer, another id), same tools.
 */
export async function buildBusyboxRootfs(dir: string, variant?: string): Promise<string> {
  const usable = await isStaticElf(busyboxPath).catch(() => false)
  if (!usable) {
    throw new Error(`${busyboxPath} is missing or not statically linked: install the Debian package ${busyboxPackage} (apt-get install -y --no-install-recommends ${busyboxPackage})`)
  }
  const suffix = variant === undefined ? '' : `-${variant.replace(/[^\w.-]/g, '_')}`
  const root = join(dir, `rootfs${suffix}`)
  await mkdir(join(root, 'bin'), { recursive: true })
  await mkdir(join(root, 'etc'), { recursive: true })
  await copyFile(busyboxPath, join(root, 'bin', 'busybox'))
  await chmod(join(root, 'bin', 'busybox'), 0o755)
  const applets = execFileSync(busyboxPath, ['--list'], { encoding: 'utf8' }).split('\n').filter((name) => /^[\w.[-]+$/.test(name) && name !== 'busybox')
  await Promise.all(applets.map((name) => symlink('busybox', join(root, 'bin', name))))
  await writeFile(join(root, 'etc', 'passwd'), 'hearth:x:1000:1000:hearth task:/task:/bin/sh\n', { mode: 0o600 })
  await writeFile(join(root, 'etc', 'group'), 'hearth:x:1000:\n', { mode: 0o600 })
  if (variant !== undefined) await writeFile(join(root, 'etc', 'hearth-variant'), `${variant}\n`)
  const tarPath = join(dir, `busybox-rootfs${suffix}.tar`)
  execFileSync('tar', ['-C', root, '--owner=0', '--group=0', '--numeric-owner', '-cf', tarPath, '.'])
  return tarPath
}

/** Imports the busybox root filesystem (or a variant of it) into the engine behind `runtime`; returns the image id. */
export async function importBusyboxImage(runtime: DockerRuntime, dir: string, variant?: string): Promise<string> {
  return importRootfsArchive(runtime, await buildBusyboxRootfs(dir, variant), variant === undefined ? 'hearth-busybox' : `hearth-busybox-${variant.toLowerCase().replace(/[^a-z0-9]/g, '')}`)
}

export interface TestEngine {
  socketPath: string
  /** Where it came from, for test titles and failure messages. */
  kind: 'docker' | 'podman'
  stop(): Promise<void>
}

/**
 * The engine the docker tests use: $DOCKER_HOST or a Docker socket that answers, else a private podman service in
 * `dir` (these machines have no Docker engine). Fails, never skips, when neither can run: CI must install the packages.
 */
export async function startTestEngine(dir: string): Promise<TestEngine> {
  const configured = process.env.DOCKER_HOST
  if (configured !== undefined && configured !== '') return { socketPath: defaultDockerSocket(), kind: 'docker', stop: async () => {} }
  if (existsSync('/var/run/docker.sock')) {
    const probe = await createDockerRuntime({ socketPath: '/var/run/docker.sock' }).available()
    if (probe.ok) return { socketPath: '/var/run/docker.sock', kind: 'docker', stop: async () => {} }
  }
  try {
    const service = await startPodmanService(dir)
    return { socketPath: service.socketPath, kind: 'podman', stop: () => service.stop() }
  } catch (error) {
    throw new Error(
      `no Docker engine here and no podman service could start: ${(error as Error).message}\n` +
        `install the Debian packages: apt-get install -y --no-install-recommends ${podmanPackages} ${busyboxPackage}`,
      { cause: error },
    )
  }
}
