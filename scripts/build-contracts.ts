/**
 * Compiles contracts/*.sol and contracts/test/*.sol with solc-js (pure wasm, no download) into build/contracts.json
 * (`{ HearthToken: { abi, bytecode }, HearthEscrow: { abi, bytecode } }`) and build/test-contracts.json (the hostile
 * contracts tests deploy; kept apart so nothing that ships can load them by mistake).
 * Skipped when both outputs are newer than every source and this script, so `npm ci` stays fast.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'

const require = createRequire(import.meta.url)

const rootDir = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const outputFile = join(rootDir, 'build', 'contracts.json')
const testOutputFile = join(rootDir, 'build', 'test-contracts.json')
const thisFile = fileURLToPath(import.meta.url)

/** The contracts written to each output; others compiled along (OpenZeppelin's) are left out. */
const exportedContracts = ['HearthToken', 'HearthEscrow'] as const
const testContracts = ['ReentrantToken'] as const

/** EDR 0.13 runs Prague; solc 0.8.37 defaults to Osaka, whose opcodes the chain may refuse. */
const evmVersion = 'prague'

interface SolcOutput {
  errors?: { severity: 'error' | 'warning' | 'info'; formattedMessage: string; sourceLocation?: { file: string } }[]
  contracts?: Record<string, Record<string, { abi: unknown[]; evm: { bytecode: { object: string } } }>>
}

export async function buildContracts(): Promise<void> {
  // Source names are paths relative to the repository (`contracts/test/X.sol`), as solc reports them back.
  const sourceNames = ['contracts', 'contracts/test'].flatMap((dir) =>
    readdirSync(join(rootDir, dir))
      .filter((name) => name.endsWith('.sol'))
      .sort()
      .map((name) => `${dir}/${name}`),
  )
  const sourcePaths = sourceNames.map((name) => join(rootDir, name))
  if (isUpToDate(outputFile, [...sourcePaths, thisFile]) && isUpToDate(testOutputFile, [...sourcePaths, thisFile])) return

  const started = performance.now()
  // solc-js is CommonJS and loads a ~9 MB wasm bundle: required lazily so an up-to-date build pays nothing.
  const solc = require('solc') as { compile(input: string, callbacks: object): string; version(): string }
  const input = {
    language: 'Solidity',
    sources: Object.fromEntries(
      sourceNames.map((name, i) => [name, { content: readFileSync(sourcePaths[i]!, 'utf8') }]),
    ),
    settings: {
      evmVersion,
      optimizer: { enabled: true, runs: 200 },
      outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object'] } },
    },
  }
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: resolveImport })) as SolcOutput

  const errors = (output.errors ?? []).filter((e) => e.severity === 'error')
  if (errors.length > 0) {
    throw new Error(`solc failed to compile contracts/:\n${errors.map((e) => e.formattedMessage).join('\n')}`)
  }
  // Warnings inside OpenZeppelin (e.g. that its transient-storage guard uses tstore) are not ours to act on.
  const ownWarnings = (output.errors ?? []).filter((e) => e.severity === 'warning' && e.sourceLocation?.file.startsWith('@') !== true)
  for (const warning of ownWarnings) {
    console.warn(warning.formattedMessage)
  }

  const pick = (names: readonly string[], dir: string): Record<string, { abi: unknown[]; bytecode: string }> => {
    const artifacts: Record<string, { abi: unknown[]; bytecode: string }> = {}
    for (const name of names) {
      const compiled = output.contracts?.[`${dir}/${name}.sol`]?.[name]
      if (compiled === undefined) throw new Error(`solc output has no contract ${name} (expected in ${dir}/${name}.sol)`)
      artifacts[name] = { abi: compiled.abi, bytecode: `0x${compiled.evm.bytecode.object}` }
    }
    return artifacts
  }
  mkdirSync(dirname(outputFile), { recursive: true })
  writeAtomically(testOutputFile, pick(testContracts, 'contracts/test'))
  // The main output last: its mtime is what the up-to-date check of other processes compares first.
  writeAtomically(outputFile, pick(exportedContracts, 'contracts'))
  console.log(
    `hearth build: compiled ${[...exportedContracts, ...testContracts].join(', ')} with solc ${solc.version()} ` +
      `in ${Math.round(performance.now() - started)} ms`,
  )
}

/** Written aside then renamed: test files build concurrently, and a reader must never see half a file. */
function writeAtomically(file: string, value: unknown): void {
  const partialFile = `${file}.${process.pid}.tmp`
  writeFileSync(partialFile, `${JSON.stringify(value, null, 2)}\n`)
  renameSync(partialFile, file)
}

function isUpToDate(output: string, inputs: string[]): boolean {
  if (!existsSync(output)) return false
  const outputMtimeMs = statSync(output).mtimeMs
  return inputs.every((input) => statSync(input).mtimeMs < outputMtimeMs)
}

/** solc's import callback: `@openzeppelin/...` from node_modules, anything else relative to the repository. */
function resolveImport(importPath: string): { contents: string } | { error: string } {
  try {
    const file = importPath.startsWith('@')
      ? require.resolve(importPath, { paths: [rootDir] })
      : join(rootDir, importPath)
    return { contents: readFileSync(file, 'utf8') }
  } catch (error) {
    return { error: `cannot resolve import ${importPath}: ${error instanceof Error ? error.message : String(error)}` }
  }
}
