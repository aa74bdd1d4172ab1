// The shared compliance suite for the docker runtime, against the busybox test image on a private podman service (or
// a Docker engine where one runs). What the items show here:
// - /etc/passwd: the image names its container user in an /etc/passwd only root may read (docker-test-image.ts).
//   Without that, podman writes a one-line /etc/passwd for the numeric user into the read-only container, and the
//   "only the task directory" item sees a readable /etc/passwd (not the host's: it holds no root entry).
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { registerRuntimeCompliance } from './runtime-compliance.ts'
import type { ProgramCall } from './runtime-compliance.ts'
import { createDockerRuntime } from './docker-runtime.ts'
import type { DockerProgram, DockerRuntime } from './docker-runtime.ts'
import { importBusyboxImage, startTestEngine } from './docker-test-image.ts'
import type { TestEngine } from './docker-test-image.ts'
import { shellCompliancePrograms } from './testdata/runtime-test-support.ts'

let engine: TestEngine | undefined
let dir: string | undefined
let image = ''

/** `sh -c script sh args...` in the busybox image: the script sees args as $1, $2, … (never spliced into it). */
const sh = (script: string, ...args: string[]): ProgramCall<DockerProgram> => ({ program: { image }, args: ['/bin/sh', '-c', script, 'sh', ...args] })

after(async () => {
  await engine?.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

registerRuntimeCompliance<DockerProgram>({
  name: 'docker',
  create: () => createDockerRuntime({ socketPath: engine!.socketPath }),
  programs: async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-docker-compliance-engine-'))
    engine = await startTestEngine(join(dir, 'podman'))
    const importer = createDockerRuntime({ socketPath: engine.socketPath })
    image = await importBusyboxImage(importer, dir)
    await importer.close()
    return {
      ...shellCompliancePrograms(sh),
      // busybox has no printenv: test whether the variable is set, then print it.
      env: (name) => sh('eval "[ \\"\\${$1+set}\\" = set ]" || exit 1; eval "printf \'%s\\n\' \\"\\$$1\\""', name),
      connect: (host, port) => sh('nc -w 2 "$1" "$2" < /dev/null && echo connected', host, String(port)),
    }
  },
  leftovers: (runtime) => (runtime as DockerRuntime).leftovers(),
})
