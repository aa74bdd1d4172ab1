import { registerRuntimeCompliance } from './runtime-compliance.ts'
import type { ProgramCall } from './runtime-compliance.ts'
import { createNativeRuntime } from './native-runtime.ts'
import type { NativeProgram, NativeRuntime } from './native-runtime.ts'
import { shellCompliancePrograms } from './testdata/runtime-test-support.ts'

/** `sh -c script sh args...`: the script sees args as $1, $2, … (never spliced into the script text). */
const sh = (script: string, ...args: string[]): ProgramCall<NativeProgram> => ({ program: '/bin/sh', args: ['sh', '-c', script, 'sh', ...args] })

registerRuntimeCompliance<NativeProgram>({
  name: 'native',
  // /bin/bash only for its /dev/tcp, to try a connection without any network tool installed.
  // TASK_VALUE is the env program's variable: a task's env is an allow-list the provider extends (allowedEnv).
  create: () => createNativeRuntime({ programs: ['/bin/sh', '/bin/bash'], allowedEnv: ['TASK_VALUE'] }),
  programs: () => ({
    ...shellCompliancePrograms(sh),
    env: (name) => sh('exec printenv -- "$1"', name),
    connect: (host, port) => ({ program: '/bin/bash', args: ['bash', '-c', 'exec 3<> "/dev/tcp/$1/$2" && echo connected', 'bash', host, String(port)] }),
  }),
  leftovers: (runtime) => (runtime as NativeRuntime).leftovers(),
})
