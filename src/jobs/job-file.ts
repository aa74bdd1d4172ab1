/**
 * The job file: what `hearth run` takes. It is checked whole before anything starts or any money is locked, and every
 * problem names its field (`tasks[2].inputs./in/a.txt`) and what was expected, so a person can fix the file in one go.
 */
import { existsSync, readFileSync, statSync } from 'node:fs'
import { dirname, isAbsolute, posix, resolve } from 'node:path'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { parseConstraints } from '../market/constraints/parser.ts'

const guestPath = z
  .string()
  .refine((path) => path.startsWith('/') && posix.normalize(path) === path && !path.split('/').includes('..') && path !== '/', {
    message: 'expected an absolute guest path such as /in/data.txt (no "..", no trailing slash)',
  })

const taskSchema = z.strictObject({
  args: z.array(z.string()).default([]),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name'), z.string()).default({}),
  inputs: z.record(guestPath, z.string().min(1, 'expected the path of a local file')).default({}),
  outputs: z.array(guestPath).default([]),
})

const decimalWei = z.string().regex(/^[0-9]+$/, 'expected an amount in wei as a decimal string, e.g. "1000000000000000"')

const jobFileFields = z.strictObject({
  name: z.string().min(1).max(200),
  runtime: z.enum(['wasi', 'native', 'docker'], { message: 'expected "wasi", "native" or "docker"' }),
  /** wasi: the .wasm module. */
  package: z.string().min(1, 'expected the path of a .wasm file').optional(),
  /** native: the name of a program providers offer, e.g. povray. */
  program: z.string().regex(/^[A-Za-z0-9._+-]{1,100}$/, 'expected a program name such as povray').optional(),
  /** docker: an image archive (docker save / podman save format). */
  image: z.string().min(1, 'expected the path of an image archive (.tar)').optional(),
  tasks: z.array(taskSchema).min(1, 'expected at least one task'),
  timeoutMs: z.number().int().positive().max(3_600_000).default(60_000),
  maxMemoryMib: z.number().int().positive().max(4096).default(256),
  maxOutputMib: z.number().int().positive().max(1024).default(64),
  pricePerTaskWei: decimalWei.optional(),
  providers: z.number().int().positive().max(64).optional(),
  /** The requestor's constraints on offers, in the constraint language, e.g. "(golem.inf.mem.gib>=2)". */
  constraints: z.string().max(64 * 1024).optional(),
  sla: z
    .strictObject({
      minMemGib: z.number().positive().optional(),
      minStorageGib: z.number().positive().optional(),
      minThreads: z.number().int().positive().optional(),
      minCpuScore: z.number().nonnegative().optional(),
      minGpus: z.number().int().positive().optional(),
      countries: z.array(z.string().regex(/^[A-Za-z]{2}$/, 'expected a two-letter country code')).max(300).optional(),
      maxLatencyMs: z.number().positive().optional(),
    })
    .optional(),
})

/** Each runtime needs its own field: a wasi module, a native program's name, or a docker image archive. */
export const jobFileSchema = jobFileFields.superRefine((job, ctx) => {
  const need = { wasi: 'package', native: 'program', docker: 'image' } as const
  const field = need[job.runtime]
  if (job[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required for runtime "${job.runtime}"` })
  for (const other of Object.values(need)) {
    if (other !== field && job[other] !== undefined) ctx.addIssue({ code: 'custom', path: [other], message: `not used by runtime "${job.runtime}"` })
  }
})

export type JobFile = z.output<typeof jobFileSchema>
export type JobFileTask = JobFile['tasks'][number]

/** A job file whose local paths have been resolved and checked to exist. */
export interface LoadedJob extends JobFile {
  /** Absolute paths, resolved against the job file's folder: the wasi module or the docker image archive. */
  packagePath: string | undefined
  tasks: (JobFileTask & { inputPaths: Record<string, string> })[]
}

function fieldName(path: readonly PropertyKey[]): string {
  let out = ''
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`
  return out === '' ? '(top level)' : out
}

/** Validates parsed JSON as a job; `baseDir` resolves relative paths. Throws HEARTH_ERR_JOB_INVALID or _INPUT_MISSING. */
export function parseJob(value: unknown, baseDir: string, source = 'job file'): LoadedJob {
  const parsed = jobFileSchema.safeParse(value)
  if (!parsed.success) {
    const problems = parsed.error.issues.map((issue) => `${fieldName(issue.path)}: ${issue.message}`)
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `${source} is invalid:\n  ${problems.join('\n  ')}`, {
      hint: 'fix the fields named above; the README shows a complete job file',
      details: { problems },
    })
  }
  const job = parsed.data
  if (job.constraints !== undefined && job.constraints.trim() !== '') {
    try {
      parseConstraints(job.constraints)
    } catch (cause) {
      const problem = `constraints: ${isHearthError(cause) ? cause.shortMessage : String(cause)}`
      throw new HearthError('HEARTH_ERR_JOB_INVALID', `${source} is invalid:\n  ${problem}`, {
        hint: 'constraints use Golem\'s filter syntax, e.g. (&(golem.inf.mem.gib>=2)(golem.runtime.name=wasi))',
        details: { problems: [problem] },
        cause,
      })
    }
  }
  const missing: string[] = []
  const local = (field: string, path: string): string => {
    const absolute = isAbsolute(path) ? path : resolve(baseDir, path)
    if (!existsSync(absolute) || !statSync(absolute).isFile()) missing.push(`${field}: ${path} (looked for ${absolute})`)
    return absolute
  }
  const packagePath = job.package !== undefined ? local('package', job.package) : job.image !== undefined ? local('image', job.image) : undefined
  const tasks = job.tasks.map((task, index) => ({
    ...task,
    inputPaths: Object.fromEntries(
      Object.entries(task.inputs).map(([guest, host]) => [guest, local(`tasks[${index}].inputs.${guest}`, host)]),
    ),
  }))
  if (missing.length > 0) {
    throw new HearthError('HEARTH_ERR_JOB_INPUT_MISSING', `${source} names files that do not exist:\n  ${missing.join('\n  ')}`, {
      hint: 'paths in a job file are relative to the job file\'s folder',
      details: { missing },
    })
  }
  return { ...job, packagePath, tasks }
}

export function loadJobFile(path: string): LoadedJob {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_JOB_INPUT_MISSING', `cannot read the job file ${path}`, { hint: 'check the path', cause })
  }
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `${path} is not valid JSON: ${(cause as Error).message}`, {
      hint: 'a job file is a JSON object; see the README for an example',
      cause,
    })
  }
  return parseJob(value, dirname(resolve(path)), path)
}
