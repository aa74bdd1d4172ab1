// The `hearth` command run from dist/ whatever its build stamp says: bin/hearth.js's dist/ branch alone. bench/memory.ts
// uses it when src/ has changed since the last build, so that its figures are those of the built command, not of the
// sources run through tsx's loader.
//
//   node bench/lib/hearth-dist.mjs provider start …
const { main } = await import('../../dist/cli/main.js')
process.exitCode = await main(process.argv.slice(2))
