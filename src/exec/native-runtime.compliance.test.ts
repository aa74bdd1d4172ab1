import { registerRuntimeCompliance } from './runtime-compliance.ts'
import type { ProgramCall } from './runtime-compliance.ts'
import { createNativeRuntime } from './native-runtime.ts'
import type { NativeProgram, NativeRuntime } from './native-runtime.ts'

/** `sh -c script sh args...`: the script sees args as $1, $2, … (never spliced into the script text). */
const sh = (script: string, ...args: string[]): ProgramCall<NativeProgram> => ({ program: '/bin/sh', args: ['sh', '-c', script, 'sh', ...args] })

registerRuntimeCompliance<NativeProgram>({
  name: 'native',
  // /bin/bash only for its /dev/tcp, to try a connection without any network tool installed.
  create: () => createNativeRuntime({ programs: ['/bin/sh', '/bin/bash'] }),
  programs: () => ({
    stdio: (out, err, exitCode) => sh('printf "%s\\n" "$1"; printf "%s\\n" "$2" >&2; exit "$3"', out, err, String(exitCode)),
    read: (path) => sh('exec cat -- "$1"', path),
    write: (path, text) => sh('printf "%s" "$2" > "$1"', path, text),
    env: (name) => sh('exec printenv -- "$1"', name),
    symlinkRead: (target, link) => sh('ln -s -- "$1" "$2"; exec cat -- "$2"', target, link),
    // Doubles a shell string until the kernel's OOM killer stops it.
    allocate: () => sh('x=a; while :; do x="$x$x"; done'),
    loop: () => sh('while :; do :; done'),
    stream: (text) => sh('printf "%s\\n" "$1"; while :; do :; done', text),
    spam: () => sh('exec yes AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA'),
    fill: (path) => sh('exec yes > "$1"', path),
    tick: (path) => sh('while :; do echo tick >> "$1"; sleep 0.01; done', path),
    background: (path) => sh('(while :; do echo tick >> "$1"; sleep 0.01; done) < /dev/null > /dev/null 2>&1 & exit 0', path),
    // Each f starts two more in the background; dash gives up when fork fails, so the outer loop keeps trying.
    forkBomb: () => sh('f() { f | f & }; while :; do f 2> /dev/null; done'),
    connect: (host, port) => ({ program: '/bin/bash', args: ['bash', '-c', 'exec 3<> "/dev/tcp/$1/$2" && echo connected', 'bash', host, String(port)] }),
  }),
  leftovers: (runtime) => (runtime as NativeRuntime).leftovers(),
})
