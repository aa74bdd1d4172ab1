#!/usr/bin/env node
// Entry point of the `hearth` command. It runs the JavaScript that `npm ci` / `npm run build` emitted into dist/ when
// that build is current (see build-stamp.js), and otherwise the TypeScript sources through tsx's loader, as a clone
// that was never built or whose src/ changed since its build: a stale build never runs.
import { fileURLToPath } from 'node:url'
import { pickEntry } from './build-stamp.js'

const root = fileURLToPath(new URL('..', import.meta.url))
let main
if (pickEntry(root) === 'dist') {
  ;({ main } = await import('../dist/cli/main.js'))
} else {
  const { register } = await import('tsx/esm/api')
  register()
  ;({ main } = await import('../src/cli/main.ts'))
}
process.exitCode = await main(process.argv.slice(2))
