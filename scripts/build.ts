/**
 * Builds what a clone needs beyond its sources: the Solidity contracts (solc-js) and the built-in WASI workloads
 * (AssemblyScript). Runs from `npm ci` (the `prepare` script) and `npm run build`; outputs go to build/.
 */
import { buildContracts } from './build-contracts.ts'
import { buildWorkloads } from './build-workloads.ts'

const started = performance.now()
await buildContracts()
await buildWorkloads()
console.log(`hearth build: done in ${Math.round(performance.now() - started)} ms`)
