/**
 * The runtimes a provider node opens from its configuration: wasi always, native when the owner allows programs,
 * docker when enabled; and, for status, why those not enabled are not offered and what enabling them would take.
 */
import { existsSync } from 'node:fs'
import { createDockerRuntime, defaultDockerSocket, type DockerRuntime } from '../exec/docker-runtime.ts'
import { createNativeRuntime, type NativeRuntime } from '../exec/native-runtime.ts'
import { createWasiRuntime, type WasiRuntime } from '../exec/wasi-runtime.ts'
import type { ProviderConfig } from './config.ts'

export interface NodeRuntimes {
  runtime: WasiRuntime
  native: NativeRuntime | undefined
  docker: DockerRuntime | undefined
  /** Lines for status: each runtime the owner has not enabled, and why. */
  notEnabled: string[]
}

/** Opens the configured runtimes; each one's close is pushed onto `stops`. */
export function openRuntimes(config: ProviderConfig, stops: (() => Promise<void> | void)[]): NodeRuntimes {
  const runtime = createWasiRuntime({ maxWorkers: config.resources.threads })
  stops.push(() => runtime.close())
  const programs = config.runtimes.native
  let native: NativeRuntime | undefined
  if (Object.keys(programs).length > 0) {
    native = createNativeRuntime({ programs: Object.values(programs), allowedEnv: config.runtimes.nativeEnv })
    stops.push(() => native!.close())
  }
  let docker: DockerRuntime | undefined
  if (config.runtimes.docker !== false) {
    docker = createDockerRuntime({ socketPath: config.runtimes.docker })
    stops.push(() => docker!.close())
  }
  // Runtimes the owner has not enabled are not offered; status says so, and what enabling them would take.
  const notEnabled: string[] = []
  if (native === undefined) notEnabled.push('native: no programs allowed (list them under runtimes.native)')
  if (docker === undefined) {
    let socket: string | undefined
    try {
      socket = defaultDockerSocket()
    } catch {
      socket = undefined
    }
    notEnabled.push(socket !== undefined && existsSync(socket) ? `docker: not enabled (an engine answers at ${socket}; set runtimes.docker to it)` : 'docker: not enabled, and no Docker Engine socket was found')
  }
  return { runtime, native, docker, notEnabled }
}
