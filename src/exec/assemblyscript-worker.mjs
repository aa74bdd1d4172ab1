// @ts-check
// Runs one AssemblyScript compile for assemblyscript-compiler.ts. A plain .mjs worker started without tsx: loading the
// 13 MB binaryen bundle through tsx's loader takes ~8 s, without it ~0.5 s.
import { parentPort, workerData } from 'node:worker_threads'

const { files, argv } = /** @type {{ files: Record<string, string>, argv: string[] }} */ (workerData)
const outputs = new Map()
let stderr = ''
try {
  const { default: asc } = await import('assemblyscript/asc')
  const result = await asc.main(argv, {
    readFile: (name) => files[name.replace(/^\.\//, '')] ?? null,
    writeFile: (name, contents) => void outputs.set(name, contents),
    listFiles: () => [],
    stdout: asc.createMemoryStream(),
    stderr: asc.createMemoryStream((chunk) => {
      stderr += typeof chunk === 'string' ? chunk : new TextDecoder().decode(chunk)
    }),
  })
  const binary = outputs.get('out.wasm')
  parentPort?.postMessage({
    binary: result.error === null && binary instanceof Uint8Array ? binary : undefined,
    error: result.error === null ? undefined : String(result.error.message),
    stderr,
  })
} catch (error) {
  parentPort?.postMessage({ crashed: error instanceof Error ? (error.stack ?? error.message) : String(error), stderr })
}
