import { readFile } from 'node:fs/promises'
import { compileAssemblyScript } from './assemblyscript-compiler.ts'
import { registerRuntimeCompliance } from './runtime-compliance.ts'
import type { ProgramCall } from './runtime-compliance.ts'
import { adaptWasiRuntime } from './wasi-adapter.ts'
import type { WasmProgram } from './wasi-adapter.ts'
import { createWasiRuntime } from './wasi-runtime.ts'

registerRuntimeCompliance<WasmProgram>({
  name: 'wasi',
  create: () => adaptWasiRuntime(createWasiRuntime({ maxWorkers: 2 })),
  async programs() {
    const source = await readFile(new URL('./testdata/compliance-guest.asc', import.meta.url), 'utf8')
    const guest = await compileAssemblyScript({ files: { 'guest.ts': source }, entry: 'guest.ts', optimize: false })
    const call = (...args: string[]): ProgramCall<WasmProgram> => ({ program: guest, args: ['guest', ...args] })
    return {
      stdio: (out, err, exitCode) => call('stdio', out, err, String(exitCode)),
      read: (path) => call('read', path),
      write: (path, text) => call('write', path, text),
      env: (name) => call('env', name),
      symlinkRead: (target, link) => call('symlink-read', target, link),
      allocate: () => call('allocate'),
      loop: () => call('loop'),
      stream: (text) => call('stream', text),
      spam: () => call('spam'),
      fill: (path) => call('fill', path),
      tick: (path) => call('tick', path),
    }
  },
  notApplicable: {
    background: 'a WASI preview1 guest cannot start processes',
    forkBomb: 'a WASI preview1 guest cannot start processes',
    connect: 'WASI preview1 has no call that opens a socket (only sock_accept on sockets the host preopens, and it preopens none)',
  },
})
