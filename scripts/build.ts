/**
 * Builds what a clone needs beyond its sources: the Solidity contracts (solc-js) and the built-in WASI workloads
 * (AssemblyScript) into build/, src/ compiled to JavaScript and declarations into dist/ (what the package's
 * `exports` and a fast `hearth` start use), and the dashboard (web/) bundled into dist/web/, which the nodes serve. Runs from `npm ci` (the `prepare` script) and `npm run build`; each step
 * skips what is up to date.
 */
import { buildContracts } from './build-contracts.ts'
import { buildJs } from './build-js.ts'
import { buildWeb } from './build-web.ts'
import { buildWorkloads } from './build-workloads.ts'

const started = performance.now()
await buildContracts()
await buildWorkloads()
buildJs()
await buildWeb()
console.log(`hearth build: done in ${Math.round(performance.now() - started)} ms`)
