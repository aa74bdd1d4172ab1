#!/usr/bin/env node
// Entry point of the `hearth` command. TypeScript sources run through tsx's loader, so a clone needs no compile step.
import { register } from 'tsx/esm/api'
register()
const { main } = await import('../src/cli/main.ts')
process.exitCode = await main(process.argv.slice(2))
