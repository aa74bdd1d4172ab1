/**
 * The job file: what `hearth run` takes. It is checked whole before anything starts or any money is locked, and every
 * problem names its field (`tasks[2].inputs./in/a.txt`) and what was expected, so a person can fix the file in one go.
 * `kind` picks the shape: "map" (the default, a task list), "mapreduce", "sweep" or "render"; src/jobs/kinds.ts turns a
 * checked job into the tasks it runs.
 */
import { existsSync, readdirSync, readFileSync, statSync, type Dirent } from 'node:fs'
import { dirname, isAbsolute, join, posix, resolve, sep } from 'node:path'
import { z } from 'zod'
import { HearthError, isHearthError } from '../errors.ts'
import { parseConstraints } from '../market/constraints/parser.ts'

const guestPath = z
  .string()
  .refine((path) => path.startsWith('/') && posix.normalize(path) === path && !path.split('/').includes('..') && path !== '/', {
    message: 'expected an absolute guest path such as /in/data.txt (no "..", no trailing slash)',
  })

/** A record keyed by guest paths names a bad key with what was expected (zod's own message says only "Invalid key"). */
function guestPathKeyError(issue: { code?: string }): string | undefined {
  return issue.code === 'invalid_key' ? 'expected an absolute guest path such as /in/data.txt (no "..", no trailing slash)' : undefined
}

const taskSchema = z.strictObject({
  args: z.array(z.string()).default([]),
  env: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string(), {
      error: (issue) => (issue.code === 'invalid_key' ? 'expected an environment variable name (letters, digits and _)' : undefined),
    })
    .default({}),
  inputs: z.record(guestPath, z.string().min(1, 'expected the path of a local file'), { error: guestPathKeyError }).default({}),
  outputs: z.array(guestPath).default([]),
})

const decimalWei = z.string().regex(/^[0-9]+$/, 'expected an amount in wei as a decimal string, e.g. "1000000000000000"')

export const jobKinds = ['map', 'mapreduce', 'sweep', 'render'] as const
export type JobKind = (typeof jobKinds)[number]
const kindSchema = z.enum(jobKinds, { message: 'expected "map", "mapreduce", "sweep" or "render"' })

/** Fields every kind of job has: what runs, where, under which limits, for how much. */
const commonFields = {
  name: z.string().min(1).max(200),
  runtime: z.enum(['wasi', 'native', 'docker'], { message: 'expected "wasi", "native" or "docker"' }),
  /** wasi: the .wasm module. */
  package: z.string().min(1, 'expected the path of a .wasm file').optional(),
  /** native: the name of a program providers offer, e.g. povray. */
  program: z.string().regex(/^[A-Za-z0-9._+-]{1,100}$/, 'expected a program name such as povray').optional(),
  /** docker: an image archive (docker save / podman save format). */
  image: z.string().min(1, 'expected the path of an image archive (.tar)').optional(),
}

const limitFields = {
  /** The most the job may lock in deposits, in wei; checked before any money moves. */
  budgetWei: decimalWei.optional(),
  /** How results are checked: replicas per task and the quorum, adaptive checks by reputation, local spot checks. */
  verification: z
    .strictObject({
      replicas: z.number().int().min(1).max(9).optional(),
      quorum: z.number().int().min(1).max(9).optional(),
      adaptive: z.boolean().optional(),
      spotCheckRate: z.number().min(0).max(1).optional(),
      /** Check each provider's offered threads and CPU score with a short probe (default: when the SLA relies on them). */
      probe: z.boolean().optional(),
    })
    .optional(),
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
  /**
   * How much each feature counts when offers that match are ranked (defaults: cost 1, cpuScore 0.3, latency 0.3,
   * distance 0, reputation 0.5); each is scaled to [0, 1] across the candidates, so only the ratios matter.
   */
  weights: z
    .strictObject({
      cost: z.number().min(0).max(100).optional(),
      cpuScore: z.number().min(0).max(100).optional(),
      latency: z.number().min(0).max(100).optional(),
      distance: z.number().min(0).max(100).optional(),
      reputation: z.number().min(0).max(100).optional(),
    })
    .optional(),
}

const jobFileFields = z.strictObject({
  kind: z.literal('map').default('map'),
  ...commonFields,
  tasks: z.array(taskSchema).min(1, 'expected at least one task'),
  ...limitFields,
})

const envSchema = taskSchema.shape.env
/** A program's arguments in a job kind's template; `{name}` placeholders are filled in per task. */
const argsTemplate = z.array(z.string()).optional()
const fileName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/, 'expected a plain file name such as counts.tsv')

/** One step of a map-reduce job: its arguments (default: the built-in wordcount's) and, for wasi, its own module. */
const stepSchema = z
  .strictObject({
    args: argsTemplate,
    env: envSchema,
    package: z.string().min(1, 'expected the path of a .wasm file').optional(),
  })
  .default({ env: {} })

const mapReduceFields = z.strictObject({
  kind: z.literal('mapreduce'),
  ...commonFields,
  /** Local text files: paths or globs (`*`, `?`, `**`), relative to the job file's folder. */
  inputs: z.array(z.string().min(1, 'expected a path or glob of local files')).min(1, 'expected at least one input file or glob'),
  /** About how many bytes of input each mapper gets; chunks are cut at whitespace, so a word or line is never split. */
  chunkBytes: z.number().int().min(64).max(1024 * 1024 * 1024).default(1024 * 1024),
  /** How many partitions the mappers write and reducers run. */
  reducers: z.number().int().positive().max(1024).default(4),
  map: stepSchema,
  reduce: stepSchema,
  /** The merged output's file name. */
  output: fileName.default('output.tsv'),
  ...limitFields,
})

const gridValue = z.union([z.number(), z.string(), z.boolean()], { message: 'expected a number, a string or a boolean' })
const maxSweepSettings = 10_000

const sweepFields = z.strictObject({
  kind: z.literal('sweep'),
  ...commonFields,
  /** Parameter name → the values to try; the sweep runs every combination. */
  grid: z
    .record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_-]{0,63}$/), z.array(gridValue).min(1, 'expected at least one value'), {
      error: (issue) => (issue.code === 'invalid_key' ? 'expected a parameter name such as lr (letters, digits, _ and -)' : undefined),
    })
    .refine((grid) => Object.keys(grid).length > 0, 'expected at least one parameter, e.g. {"lr": [0.01, 0.1]}')
    .refine(
      (grid) => Object.values(grid).reduce((n, values) => n * values.length, 1) <= maxSweepSettings,
      `expected at most ${maxSweepSettings} settings (the product of the value counts)`,
    ),
  /** `{param}` placeholders take the setting's values; parameters no placeholder names are appended as `--param value`. */
  args: z.array(z.string()).default([]),
  env: envSchema,
  /** Guest path → a local file, or `dataset:iris` for the Iris data set as CSV. */
  inputs: z.record(guestPath, z.string().min(1, 'expected the path of a local file or dataset:iris'), { error: guestPathKeyError }).default({}),
  metric: z.strictObject({
    name: z.string().regex(/^[A-Za-z_][A-Za-z0-9_.-]{0,63}$/, 'expected the metric\'s key, such as accuracy'),
    goal: z.enum(['max', 'min'], { message: 'expected "max" (higher is better) or "min" (lower is better)' }),
    /** A guest file holding a JSON object with the metric; default: the last JSON object line on stdout. */
    file: guestPath.optional(),
  }),
  ...limitFields,
})

const renderFields = z.strictObject({
  kind: z.literal('render'),
  ...commonFields,
  width: z.number().int().positive().max(16_384),
  height: z.number().int().positive().max(16_384),
  /** How many pieces: tiles for the built-in tracer, row bands for a native renderer. */
  tiles: z.number().int().positive().max(4096).default(8),
  /** native: the scene file (POV-Ray .pov). */
  scene: z.string().min(1, 'expected the path of a scene file').optional(),
  /** The merged image's file name. */
  output: fileName.default('render.png'),
  ...limitFields,
})

/** Each runtime needs its own field: a wasi module, a native program's name, or a docker image archive. */
function checkRuntime(job: { runtime: 'wasi' | 'native' | 'docker'; package?: string | undefined; program?: string | undefined; image?: string | undefined }, ctx: z.RefinementCtx): void {
  const need = { wasi: 'package', native: 'program', docker: 'image' } as const
  const field = need[job.runtime]
  if (job[field] === undefined) ctx.addIssue({ code: 'custom', path: [field], message: `required for runtime "${job.runtime}"` })
  for (const other of Object.values(need)) {
    if (other !== field && job[other] !== undefined) ctx.addIssue({ code: 'custom', path: [other], message: `not used by runtime "${job.runtime}"` })
  }
}

export const jobFileSchema = jobFileFields.superRefine(checkRuntime)

const mapReduceSchema = mapReduceFields.superRefine((job, ctx) => {
  checkRuntime(job, ctx)
  for (const step of ['map', 'reduce'] as const) {
    if (job[step].package !== undefined && job.runtime !== 'wasi') {
      ctx.addIssue({ code: 'custom', path: [step, 'package'], message: 'a step\'s own module is for runtime "wasi" only' })
    }
  }
})

const sweepSchema = sweepFields.superRefine(checkRuntime)

const renderSchema = renderFields.superRefine((job, ctx) => {
  checkRuntime(job, ctx)
  if (job.runtime === 'docker') ctx.addIssue({ code: 'custom', path: ['runtime'], message: 'expected "wasi" (built-in tracer) or "native" (povray) for a render' })
  if (job.runtime === 'native' && job.program !== 'povray') ctx.addIssue({ code: 'custom', path: ['program'], message: 'expected "povray" (the native renderer a render job knows)' })
  if (job.runtime === 'native' && job.scene === undefined) ctx.addIssue({ code: 'custom', path: ['scene'], message: 'required for a native render' })
  if (job.runtime === 'wasi' && job.scene !== undefined) ctx.addIssue({ code: 'custom', path: ['scene'], message: 'not used by the built-in tracer (its scene is built in)' })
  if (job.tiles > job.width * job.height) ctx.addIssue({ code: 'custom', path: ['tiles'], message: `expected at most width × height (${job.width * job.height}) tiles` })
})

export type JobFile = z.output<typeof jobFileSchema>
export type JobFileTask = JobFile['tasks'][number]

/** A job file whose local paths have been resolved and checked to exist. */
export interface LoadedJob extends JobFile {
  /** Absolute paths, resolved against the job file's folder: the wasi module or the docker image archive. */
  packagePath: string | undefined
  tasks: (JobFileTask & { inputPaths: Record<string, string> })[]
}

export interface MapReduceJob extends z.output<typeof mapReduceSchema> {
  packagePath: string | undefined
  /** The input files, absolute, sorted and without repeats (globs expanded). */
  inputFiles: string[]
  inputBytes: number
  /** Each step's own module, where the job names one. */
  mapPackagePath: string | undefined
  reducePackagePath: string | undefined
}

/** A sweep input: a local file, or a data set generated at planning time. */
export type SweepInputSource = { file: string } | { dataset: 'iris' }

export interface SweepJob extends z.output<typeof sweepSchema> {
  packagePath: string | undefined
  inputSources: Record<string, SweepInputSource>
}

export interface RenderJob extends z.output<typeof renderSchema> {
  packagePath: string | undefined
  scenePath: string | undefined
}

/** A checked job of any kind; `kind` tells which. */
export type JobDefinition = LoadedJob | MapReduceJob | SweepJob | RenderJob

function fieldName(path: readonly PropertyKey[]): string {
  let out = ''
  for (const key of path) out += typeof key === 'number' ? `[${key}]` : out === '' ? String(key) : `.${String(key)}`
  return out === '' ? '(top level)' : out
}

function invalid(source: string, problems: string[], hint = 'fix the fields named above; the README shows a complete job file of each kind'): HearthError {
  return new HearthError('HEARTH_ERR_JOB_INVALID', `${source} is invalid:\n  ${problems.join('\n  ')}`, { hint, details: { problems } })
}

function problemsOf(error: z.ZodError): string[] {
  return error.issues.map((issue) => `${fieldName(issue.path)}: ${issue.message}`)
}

const schemas = { map: jobFileSchema, mapreduce: mapReduceSchema, sweep: sweepSchema, render: renderSchema } as const

const globChars = /[*?]/

/** A glob segment as a regular expression: `*` any run of characters but `/`, `?` one; a leading dot must be named. */
function segmentPattern(segment: string): RegExp {
  const body = segment.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]')
  return new RegExp(`^${segment.startsWith('.') ? '' : '(?!\\.)'}${body}$`)
}

/** The files a glob names under `dir`, by its remaining `segments` (`**` matches any number of folders). */
function walkGlob(dir: string, segments: string[], found: string[]): void {
  if (segments.length === 0) {
    if (existsSync(dir) && statSync(dir).isFile()) found.push(dir)
    return
  }
  const [segment, ...rest] = segments as [string, ...string[]]
  if (!globChars.test(segment)) {
    walkGlob(join(dir, segment), rest, found)
    return
  }
  let entries: Dirent[]
  try {
    entries = readdirSync(dir, { withFileTypes: true })
  } catch {
    return
  }
  if (segment === '**') {
    walkGlob(dir, rest, found)
    for (const entry of entries) if (entry.isDirectory() && !entry.name.startsWith('.')) walkGlob(join(dir, entry.name), segments, found)
    return
  }
  const pattern = segmentPattern(segment)
  for (const entry of entries) {
    if (!pattern.test(entry.name)) continue
    if (rest.length === 0 ? entry.isFile() : entry.isDirectory()) walkGlob(join(dir, entry.name), rest, found)
  }
}

/** The files one entry of a map-reduce job's `inputs` names: a path, or a glob matched against the file system. */
export function expandInputPattern(pattern: string, baseDir: string): string[] {
  const absolute = isAbsolute(pattern) ? pattern : resolve(baseDir, pattern)
  if (!globChars.test(pattern)) return existsSync(absolute) && statSync(absolute).isFile() ? [absolute] : []
  const segments = absolute.split(sep).filter((part) => part !== '')
  const fixed = segments.findIndex((part) => globChars.test(part))
  const found: string[] = []
  walkGlob(sep + segments.slice(0, fixed).join(sep), segments.slice(fixed), found)
  return found
}

/**
 * Validates parsed JSON as a job of any kind (`kind`, default "map"); `baseDir` resolves relative paths. Every wrong
 * field is named; then every missing local file is listed. Throws HEARTH_ERR_JOB_INVALID or _INPUT_MISSING.
 */
/**
 * `confined`: every local file the job names must lie inside `baseDir` (a job file uploaded with its inputs, which
 * must not make the node read its own key or anything else of its machine and send it to providers).
 */
export function parseJobDefinition(value: unknown, baseDir: string, source = 'job file', options: { confined?: boolean } = {}): JobDefinition {
  const rawKind = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>).kind : undefined
  const kind = kindSchema.safeParse(rawKind ?? 'map')
  if (!kind.success) throw invalid(source, kind.error.issues.map((issue) => `kind: ${issue.message}`))
  const parsed = schemas[kind.data].safeParse(value)
  if (!parsed.success) throw invalid(source, problemsOf(parsed.error))
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
  const outside: string[] = []
  const root = resolve(baseDir) + sep
  const confine = (field: string, path: string, absolute: string): void => {
    const inside = (absolute === resolve(baseDir) || absolute.startsWith(root)) && !path.split(/[/\\]/).includes('..')
    if (options.confined === true && !inside) outside.push(`${field}: ${path} is outside the job's folder`)
  }
  const local = (field: string, path: string): string => {
    const absolute = isAbsolute(path) ? path : resolve(baseDir, path)
    confine(field, path, absolute)
    if (outside.length === 0 && (!existsSync(absolute) || !statSync(absolute).isFile())) missing.push(`${field}: ${path} (looked for ${absolute})`)
    return absolute
  }
  const packagePath = job.package !== undefined ? local('package', job.package) : job.image !== undefined ? local('image', job.image) : undefined
  const checked = <T extends JobDefinition>(loaded: T): T => {
    if (outside.length > 0) throw invalid(source, outside, 'a job sent to a node names only the files sent with it, by paths relative to the job file')
    if (missing.length > 0) {
      throw new HearthError('HEARTH_ERR_JOB_INPUT_MISSING', `${source} names files that do not exist:\n  ${missing.join('\n  ')}`, {
        hint: 'paths in a job file are relative to the job file\'s folder',
        details: { missing },
      })
    }
    return loaded
  }
  switch (job.kind) {
    case 'map': {
      const tasks = job.tasks.map((task, index) => ({
        ...task,
        inputPaths: Object.fromEntries(
          Object.entries(task.inputs).map(([guest, host]) => [guest, local(`tasks[${index}].inputs.${guest}`, host)]),
        ),
      }))
      return checked<LoadedJob>({ ...job, packagePath, tasks })
    }
    case 'mapreduce': {
      const files = new Set<string>()
      job.inputs.forEach((pattern, index) => {
        confine(`inputs[${index}]`, pattern, isAbsolute(pattern) ? pattern : resolve(baseDir, pattern.replace(/[*?].*$/, '')))
        if (outside.length > 0) return
        const found = expandInputPattern(pattern, baseDir)
        if (found.length === 0) {
          const absolute = isAbsolute(pattern) ? pattern : resolve(baseDir, pattern)
          missing.push(`inputs[${index}]: ${pattern} (${globChars.test(pattern) ? 'matches no file' : 'looked for'} ${absolute})`)
        }
        for (const file of found) files.add(file)
      })
      const inputFiles = [...files].sort()
      const inputBytes = missing.length > 0 ? 0 : inputFiles.reduce((sum, file) => sum + statSync(file).size, 0)
      const mapPackagePath = job.map.package === undefined ? undefined : local('map.package', job.map.package)
      const reducePackagePath = job.reduce.package === undefined ? undefined : local('reduce.package', job.reduce.package)
      return checked<MapReduceJob>({ ...job, packagePath, inputFiles, inputBytes, mapPackagePath, reducePackagePath })
    }
    case 'sweep': {
      const inputSources: Record<string, SweepInputSource> = {}
      for (const [guest, host] of Object.entries(job.inputs)) {
        if (host.startsWith('dataset:')) {
          if (host !== 'dataset:iris') {
            throw invalid(source, [`inputs.${guest}: expected a local file or dataset:iris, got ${host}`])
          }
          inputSources[guest] = { dataset: 'iris' }
        } else {
          inputSources[guest] = { file: local(`inputs.${guest}`, host) }
        }
      }
      return checked<SweepJob>({ ...job, packagePath, inputSources })
    }
    case 'render': {
      const scenePath = job.scene === undefined ? undefined : local('scene', job.scene)
      return checked<RenderJob>({ ...job, packagePath, scenePath })
    }
  }
}

/** Validates parsed JSON as a task list (kind "map"); see parseJobDefinition for every kind. */
export function parseJob(value: unknown, baseDir: string, source = 'job file'): LoadedJob {
  const job = parseJobDefinition(value, baseDir, source)
  if (job.kind !== 'map') {
    throw invalid(source, [`kind: "${job.kind}" is planned, not a task list`], 'load it with loadJobDefinition and run it with planJob (src/jobs/kinds.ts)')
  }
  return job
}

function readJobFile(path: string): unknown {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_JOB_INPUT_MISSING', `cannot read the job file ${path}`, { hint: 'check the path', cause })
  }
  try {
    return JSON.parse(text)
  } catch (cause) {
    throw new HearthError('HEARTH_ERR_JOB_INVALID', `${path} is not valid JSON: ${(cause as Error).message}`, {
      hint: 'a job file is a JSON object; see the README for an example',
      cause,
    })
  }
}

/** Reads and checks a job file of any kind. */
export function loadJobDefinition(path: string, options: { confined?: boolean } = {}): JobDefinition {
  return parseJobDefinition(readJobFile(path), dirname(resolve(path)), path, options)
}

export function loadJobFile(path: string): LoadedJob {
  return parseJob(readJobFile(path), dirname(resolve(path)), path)
}
