/**
 * A local network others can join: `hearth devnet` in its own process serves its chain by JSON-RPC and writes a
 * deployment file, and `hearth run --bootstrap` from another process joins it with only what the devnet printed.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { hearth } from '../src/cli/testdata/run-cli.ts'
import type { RunReport } from '../src/cli/run-job.ts'
import { readDeploymentFile } from '../src/payment/deploy.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './support/wordcount.ts'

const hearthBin = fileURLToPath(new URL('../bin/hearth.js', import.meta.url))

interface DevnetJson {
  chainId: number
  rpcUrl: string
  deploymentFile: string
  funderKeyFile: string
  bootstrap: string[]
}

test('hearth run joins a hearth devnet running in another process, from what the devnet printed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-devnet-join-'))
  after(() => rm(dir, { recursive: true, force: true }))
  const deploymentFile = join(dir, 'deployment.json')
  const child = spawn(process.execPath, [hearthBin, 'devnet', '--providers', '2', '--deployment-out', deploymentFile, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  after(() => void (child.exitCode === null ? child.kill('SIGKILL') : undefined))
  let stderr = ''
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()))
  const printed = await new Promise<DevnetJson>((resolve, reject) => {
    createInterface({ input: child.stdout }).once('line', (line) => resolve(JSON.parse(line) as DevnetJson))
    child.once('exit', (code) => reject(new Error(`hearth devnet exited with ${code}:\n${stderr}`)))
  })

  // The file names the chain by a URL another process can use, and the funder key is private to its owner.
  const deployment = await readDeploymentFile(printed.deploymentFile)
  assert.equal(deployment.rpcUrl, printed.rpcUrl)
  assert.equal(deployment.chainId, printed.chainId)
  assert.equal((await stat(printed.funderKeyFile)).mode & 0o077, 0)

  const out = join(dir, 'out')
  const run = await hearth([
    'run', join(wordcountExample, 'job.json'), '--providers', '2', '--json', '--out', out, '--data-dir', join(dir, 'requestor'),
    '--bootstrap', printed.bootstrap[0]!, '--deployment', printed.deploymentFile, '--funder-key-file', printed.funderKeyFile,
  ])
  assert.equal(run.code, 0, run.stderr)
  const report = JSON.parse(run.stdout) as RunReport
  assert.deepEqual(report.failures, [])
  assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
  // Paid through the devnet's own chain: the audit read the escrows from it.
  assert.ok(report.audit.agreements.length > 0)
  assert.deepEqual(report.audit.problems, [])

  child.kill('SIGTERM')
  const code = await new Promise<number | null>((resolve) => child.once('exit', resolve))
  assert.equal(code, 0, stderr)
})
