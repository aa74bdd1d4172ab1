/**
 * The native runtime's task env allow-list. An offered program's environment can load code into it (LD_PRELOAD), so a
 * task may set only the variables listed here (defaultAllowedEnv plus the provider's allowedEnv), and a default
 * variable only to a name or a number; anything else is refused before anything starts.
 */
import { HearthError } from '../errors.ts'

/** What a default variable's value may be: a name (no `/`), a time zone (no absolute or `..` path), a count (digits, commas). */
type EnvValueRule = 'name' | 'zone' | 'count'

const defaultEnvRules: Readonly<Record<string, EnvValueRule>> = {
  LANG: 'name',
  LANGUAGE: 'name',
  'LC_*': 'name',
  TZ: 'zone',
  TERM: 'name',
  NO_COLOR: 'name',
  COLUMNS: 'count',
  LINES: 'count',
  OMP_NUM_THREADS: 'count',
  OMP_THREAD_LIMIT: 'count',
  MKL_NUM_THREADS: 'count',
  OPENBLAS_NUM_THREADS: 'count',
  BLIS_NUM_THREADS: 'count',
  NUMEXPR_NUM_THREADS: 'count',
  VECLIB_MAXIMUM_THREADS: 'count',
  RAYON_NUM_THREADS: 'count',
  GOMAXPROCS: 'count',
}
/**
 * What a task may set in its env without the provider's say: locale, time zone, terminal size, and how many threads
 * the common math and parallel runtimes start. None of them names a file to load; their values are checked to be names
 * or numbers (a locale or TERM given as a path, TZ as an absolute or `..` path, is refused), so that a task cannot point
 * an offered program at a file it wrote. Not OMP_* as a whole: OMP_TOOL_LIBRARIES loads a library.
 */
export const defaultAllowedEnv: readonly string[] = Object.keys(defaultEnvRules)

/**
 * Never allowed, not even by a provider: the dynamic loader's LD_* and the variables glibc drops for setuid programs
 * (unsecvars.h) because they make libc load or read a file they name (GCONV_PATH loads a shared object). TMPDIR, also
 * on glibc's list, is harmless here.
 */
const neverAllowedEnv = ['GCONV_PATH', 'GETCONF_DIR', 'GLIBC_TUNABLES', 'HOSTALIASES', 'LOCALDOMAIN', 'LOCPATH', 'MALLOC_TRACE', 'NIS_PATH', 'NLSPATH', 'RESOLV_HOST_CONF', 'RES_OPTIONS', 'TZDIR']
const neverAllowedPrefix = 'LD_'

/** The runtime's own PATH and HOME; a task may change them only where the provider lists them in allowedEnv. */
export const runtimeEnv = { PATH: '/usr/local/bin:/usr/bin:/bin', HOME: '/task' }

/** The variables a task may set: the defaults with their value rules, then the provider's own (any value). */
export interface EnvAllowList {
  /** The rule for a name, 'any' for a provider's own name, undefined when the name is not allowed. */
  ruleFor(name: string): EnvValueRule | 'any' | undefined
  /** The entries, for messages. */
  entries: string[]
}

export function envAllowList(providerEntries: string[]): EnvAllowList {
  if (!Array.isArray(providerEntries)) throw new HearthError('HEARTH_ERR_CONFIG_INVALID', 'native runtime: allowedEnv must be a list of variable names')
  for (const entry of providerEntries) {
    if (typeof entry !== 'string' || !/^[A-Za-z_][A-Za-z0-9_]*\*?$/.test(entry)) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: allowedEnv entry ${JSON.stringify(entry)} is neither a variable name nor a PREFIX_* pattern`, {
        hint: 'list exact names (OMP_SCHEDULE) or prefixes ending in * (MYAPP_*)',
      })
    }
    const covered = loaderVariablesCovered(entry)
    if (covered !== undefined) {
      throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `native runtime: allowedEnv entry ${entry} would let a task set ${covered}, which makes the loader or libc load a file the task chose`, {
        hint: `remove ${entry} (list narrower names); loader and libc variables (${neverAllowedPrefix}*, ${neverAllowedEnv.join(', ')}) are never passed to native programs`,
      })
    }
  }
  const matches = (pattern: string, name: string): boolean => (pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern)
  return {
    ruleFor(name) {
      if (providerEntries.some((entry) => matches(entry, name))) return 'any'
      for (const [pattern, rule] of Object.entries(defaultEnvRules)) if (matches(pattern, name)) return rule
      return undefined
    },
    entries: [...defaultAllowedEnv, ...providerEntries],
  }
}

/** The first loader or libc variable an allowedEnv entry (a name or a PREFIX* pattern) would let through, if any. */
function loaderVariablesCovered(entry: string): string | undefined {
  if (!entry.endsWith('*')) return entry.startsWith(neverAllowedPrefix) || neverAllowedEnv.includes(entry) ? entry : undefined
  const prefix = entry.slice(0, -1)
  if (prefix.startsWith(neverAllowedPrefix) || neverAllowedPrefix.startsWith(prefix)) return `${neverAllowedPrefix}PRELOAD`
  return neverAllowedEnv.find((name) => name.startsWith(prefix))
}

const envValueChecks: Record<EnvValueRule, { ok: (value: string) => boolean; expected: string }> = {
  name: { ok: (value) => !value.includes('/'), expected: 'a name, not a path (no "/")' },
  // Europe/Berlin and POSIX rules (CET-1CEST,M3.5.0,M10.5.0/3) have slashes; /file, :/file and ../file name a file.
  zone: { ok: (value) => !/^:?\//.test(value) && !value.includes('..'), expected: 'a zone name or POSIX TZ rule, not a file path' },
  count: { ok: (value) => /^[0-9]{1,9}(,[0-9]{1,9})*$/.test(value), expected: 'a number (or numbers separated by commas)' },
}

/** Refuses a task env that sets a variable off the allow-list, or a default variable to a path: nothing has started yet. */
export function checkTaskEnv(env: Record<string, string>, allowed: EnvAllowList): void {
  const refused = Object.keys(env)
    .filter((name) => allowed.ruleFor(name) === undefined)
    .sort()
  if (refused.length > 0) {
    const loader = refused.filter((name) => loaderVariablesCovered(name) !== undefined)
    const why =
      loader.length > 0
        ? `${loader.join(', ')} would make the dynamic loader or libc load a file the task chose into the offered program (LD_PRELOAD runs the task's own code there)`
        : 'only allow-listed variables reach native programs, as a variable can change what an offered program loads or runs (BASH_ENV, PYTHONPATH, …)'
    throw new HearthError('HEARTH_ERR_EXEC_ENV_NOT_ALLOWED', `the task sets the environment variable${refused.length > 1 ? 's' : ''} ${refused.join(', ')}, which the native runtime does not pass to programs: ${why}`, {
      hint: `remove ${refused.join(', ')} from the task's env and pass the setting as an argument or a file in the task directory; a task may set ${allowed.entries.join(', ')} (the runtime sets PATH and HOME; a provider can allow more names with the native runtime's allowedEnv)`,
      details: { variables: refused, allowed: allowed.entries },
    })
  }
  for (const [name, value] of Object.entries(env)) {
    const rule = allowed.ruleFor(name)
    if (rule === undefined || rule === 'any' || envValueChecks[rule].ok(value)) continue
    throw new HearthError('HEARTH_ERR_EXEC_ENV_NOT_ALLOWED', `the task sets ${name} to ${JSON.stringify(value.slice(0, 200))}; ${name} must be ${envValueChecks[rule].expected}`, {
      hint: `give ${name} ${envValueChecks[rule].expected}, or leave it out: a path here would point the offered program at a file the task wrote`,
      details: { variables: [name] },
    })
  }
}
