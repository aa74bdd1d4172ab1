/**
 * What an ExeScript activity's commands reach on this provider: its deploy resolved to a runtime and program (a wasi
 * module from the package cache or the requestor, a native program the owner allows, a docker image, loaded from its
 * archive when the engine lacks it and held while the activity lives), and blobs fetched from the requestor over
 * fetch-blob as a task's package is, checked by content id and held to a size bound while they arrive.
 */
import { readFile } from 'node:fs/promises'
import { HearthError } from '../errors.ts'
import { maxBlobChunkBytes } from '../exec/task-protocols.ts'
import type { DockerRuntime } from '../exec/docker-runtime.ts'
import type { LoadedImages } from '../exec/docker-images.ts'
import type { ExeScriptEnvironment } from '../exec/exescript.ts'
import type { PackageCache } from '../exec/package-cache.ts'
import type { Runtime } from '../exec/runtime.ts'
import { serveWasiHandler } from '../exec/wasi-handler.ts'
import type { WasiRuntime } from '../exec/wasi-runtime.ts'
import { blobSource } from '../exec/transfer.ts'
import type { AgreementTerms } from '../market/agreement.ts'
import type { PeerTarget } from '../net/dial-target.ts'
import type { Host } from '../net/host.ts'
import { cachedBlob } from './programs.ts'

/** The runtimes activities may deploy to: wasi always, native and docker where offered. */
export interface ActivityRuntimes {
  wasi: Runtime<Uint8Array>
  /** The wasi runtime itself, for request handlers (services: one instance per request). */
  wasiHandlers?: WasiRuntime
  native?: { runtime: Runtime<string>; programs: Record<string, string> }
  docker?: { runtime: DockerRuntime }
}

export interface ActivityEnvironmentInit {
  host: Host
  /** The package cache and its transfers in flight, shared with tasks. */
  packages: PackageCache
  fetching: Map<string, Promise<string>>
  runtimes: ActivityRuntimes
  loadedImages: LoadedImages | undefined
  /** Largest package (module or image archive) taken. */
  maxPackageBytes: number
  /** Largest input blob taken. */
  maxTransferBytes: number
  /** Limits of each service replica; undefined where this provider hosts no services (the owner's opt-in). */
  services: ServiceLimits | undefined
}

/** What one service replica may use on this provider. */
export interface ServiceLimits {
  maxMemoryBytes: number
  maxCpuCores: number
  maxDiskBytes: number
  maxLogBytes: number
  /** wasi request handlers: each request's deadline, body and response bounds, and instances at once. */
  handlerTimeoutMs: number
  maxRequestBytes: number
  maxResponseBytes: number
  maxConcurrentHandlers: number
}

export const defaultServiceLimits: ServiceLimits = {
  maxMemoryBytes: 512 * 1024 * 1024,
  maxCpuCores: 1,
  maxDiskBytes: 1024 * 1024 * 1024,
  maxLogBytes: 8 * 1024 * 1024,
  handlerTimeoutMs: 30_000,
  maxRequestBytes: 16 * 1024 * 1024,
  maxResponseBytes: 64 * 1024 * 1024,
  maxConcurrentHandlers: 4,
}

/** Starts a deployed program as a service's server under the provider's limits (see ExeScriptEnvironment.serve). */
function serverStarter(init: ActivityEnvironmentInit, limits: ServiceLimits): NonNullable<ExeScriptEnvironment['serve']> {
  return async (deployed, spec) => {
    if (deployed.runtime.name === 'wasi') {
      const wasi = init.runtimes.wasiHandlers
      if (wasi === undefined) throw new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', 'this provider serves no wasi request handlers', { hint: 'deploy the service as a container or native program' })
      return serveWasiHandler(wasi, {
        program: deployed.program as Uint8Array,
        args: spec.args,
        env: spec.env,
        rootDir: spec.rootDir,
        logPath: spec.logPath,
        maxLogBytes: limits.maxLogBytes,
        maxMemoryBytes: limits.maxMemoryBytes,
        timeoutMs: limits.handlerTimeoutMs,
        maxRequestBytes: limits.maxRequestBytes,
        maxResponseBytes: limits.maxResponseBytes,
        maxConcurrent: limits.maxConcurrentHandlers,
      })
    }
    const runtime = deployed.runtime
    if (runtime.serve === undefined) throw new HearthError('HEARTH_ERR_SERVICE_NOT_HOSTED', `the ${runtime.name} runtime here cannot run servers`, { hint: 'deploy the service to a provider that offers it' })
    return runtime.serve({ ...spec, program: deployed.program, maxMemoryBytes: limits.maxMemoryBytes, maxCpuCores: limits.maxCpuCores, maxDiskBytes: limits.maxDiskBytes, maxLogBytes: limits.maxLogBytes })
  }
}

/** The blob with this id: from the package cache, else fetched from the requestor and checked. */
export function blobFile(init: ActivityEnvironmentInit, contentId: string, from: PeerTarget, maxBytes = init.maxPackageBytes): Promise<string> {
  return cachedBlob(init, contentId, {
    maxBytes,
    chunkBytes: maxBlobChunkBytes,
    // The same protocols and transfer as a task's package: fetch-blob/4, or /3 and /2 from an older requestor.
    ...blobSource(init.host, from, contentId),
  })
}

/**
 * The environment of an activity under `terms` whose requestor is `from`. `holdImage` is given what lets go of a
 * docker image once it is held for the activity.
 */
export function activityEnvironment(init: ActivityEnvironmentInit, terms: AgreementTerms, from: PeerTarget, holdImage: (release: () => void) => void): ExeScriptEnvironment {
  const { packages } = init
  return {
    async resolveDeploy(deploy) {
      if (terms.runtime === 'wasi') {
        if (deploy.packageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a wasi deploy names no package', { hint: 'deploy { packageId: "sha256:…" }' })
        const packageId = deploy.packageId
        const module = await packages.using(packageId, async () => readFile(await blobFile(init, packageId, from)))
        return { runtime: init.runtimes.wasi as Runtime<unknown>, program: new Uint8Array(module), argv0: 'program' }
      }
      if (terms.runtime === 'native') {
        const native = init.runtimes.native
        const path = deploy.program === undefined ? undefined : native?.programs[deploy.program]
        if (native === undefined || path === undefined) {
          throw new HearthError('HEARTH_ERR_EXEC_PROGRAM_NOT_ALLOWED', `this provider does not offer the native program ${deploy.program ?? '(none named)'}`, {
            hint: 'name one of the programs in the offer (hearth.runtime.native.programs)',
          })
        }
        return { runtime: native.runtime as Runtime<unknown>, program: path, argv0: path }
      }
      const docker = init.runtimes.docker
      if (terms.runtime !== 'docker' || docker === undefined) {
        throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', `this provider runs no ${terms.runtime} activities`, { hint: 'agree on a runtime the offer names (golem.runtime.name)' })
      }
      if (deploy.imageId === undefined) throw new HearthError('HEARTH_ERR_EXEC_PACKAGE_INVALID', 'a docker deploy names no image', { hint: 'deploy { imageId: "sha256:…", packageId: "sha256:…" (its archive) }' })
      const imageId = deploy.imageId
      const loaded = init.loadedImages
      if (loaded === undefined) throw new HearthError('HEARTH_ERR_EXEC_RUNTIME_UNAVAILABLE', 'this provider keeps no record of loaded images', { hint: 'run docker activities on a provider agent' })
      // Kept on the engine while the activity lives: an eviction must not remove it between load and use.
      holdImage(await loaded.hold(imageId))
      if (!(await docker.runtime.hasImage(imageId))) {
        const archiveId = deploy.packageId
        if (archiveId === undefined) throw new HearthError('HEARTH_ERR_EXEC_IMAGE_MISSING', `this provider does not hold image ${imageId} and no archive was named`, { hint: 'name the image archive as packageId' })
        // Checked twice: by content id on arrival, and by image id when the engine loads it (untagged).
        await packages.using(archiveId, async () => loaded.load(archiveId, await blobFile(init, archiveId, from), imageId))
      }
      // The container's command is the whole argv.
      return { runtime: docker.runtime as Runtime<unknown>, program: { image: imageId }, argv0: undefined }
    },
    // Inputs are held to the transfer limit while they arrive, not only once they are here.
    fetchBlob: (contentId) => blobFile(init, contentId, from, init.maxTransferBytes),
    ...(init.services === undefined ? {} : { serve: serverStarter(init, init.services) }),
  }
}
