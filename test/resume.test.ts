/**
 * A requestor killed in the middle of a job (SIGKILL: no clean-up of any kind) and `hearth run --resume` from its data
 * directory: the job finishes with the right image, no task accepted before the crash runs again, and what the first
 * run owed its providers is settled once, from the results it had accepted.
 */
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { parseEther, type Hex } from 'viem'
import { startDevnet } from '../src/devnet/devnet.ts'
import type { RunReport } from '../src/cli/run-job.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { decodePng } from '../src/jobs/png.ts'
import { renderLocally } from '../src/jobs/render-tiles.ts'
import { createWasiRuntime } from '../src/exec/wasi-runtime.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import { deployHearth, writeDeploymentFile } from '../src/payment/deploy.ts'
import { createEmbeddedChain, serveChainHttp } from '../src/payment/embedded-chain.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { openStore } from '../src/store/store.ts'
import type { Agreement } from '../src/market/agreement.ts'

const hearth = fileURLToPath(new URL('../bin/hearth.js', import.meta.url))
const renderWasm = fileURLToPath(new URL('../build/workloads/render.wasm', import.meta.url))

test('a requestor killed mid-job resumes: done tasks are not rerun or paid twice, and the image is right', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-resume-'))
  after(() => rm(dir, { recursive: true, force: true }))
  // A chain in this process, reached over HTTP by the requestor's process; providers here too, on that chain.
  const funder = generateIdentity()
  const chain = await createEmbeddedChain({ chainId: 31337, accounts: [{ address: funder.address, balanceWei: parseEther('1000') }] })
  after(() => chain.close())
  const server = await serveChainHttp(chain, { port: 0 })
  after(() => server.close())
  const funderClient = createChainClient({ transport: server.url, privateKey: funder.privateKey, chainId: 31337 })
  const deployment = await deployHearth(funderClient, { faucet: true })
  await writeDeploymentFile(join(dir, 'deployment.json'), deployment)
  await writeFile(join(dir, 'funder.key'), `${funder.privateKey}\n`, { mode: 0o600 })
  const devnet = await startDevnet({ providers: 2, chain: { rpcUrl: server.url, deployment: { chainId: 31337, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress, faucet: true }, funderKey: funder.privateKey } })
  after(() => devnet.stop())

  const width = 640
  const height = 480
  const job = { kind: 'render', name: 'resumable', runtime: 'wasi', package: renderWasm, width, height, tiles: 40, output: 'render.png', providers: 2, timeoutMs: 30_000 }
  await writeFile(join(dir, 'job.json'), JSON.stringify(job))
  const args = ['run', join(dir, 'job.json'), '--bootstrap', devnet.providers[0]!.host.multiaddrs()[0]!, '--rpc', server.url, '--deployment', join(dir, 'deployment.json'),
    '--funder-key-file', join(dir, 'funder.key'), '--data-dir', join(dir, 'requestor'), '--out', join(dir, 'out'), '--providers', '2']

  // First run: killed as soon as a few tiles are done.
  const first = spawn(process.execPath, [hearth, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
  let log = ''
  let jobId: string | undefined
  const killed = new Promise<void>((resolve, reject) => {
    first.stderr.on('data', (chunk: Buffer) => {
      log += chunk.toString()
      jobId ??= /job ([0-9a-f-]{36})/.exec(log)?.[1]
      if (jobId !== undefined && /\] [1-9]\d*\/40 tasks/.test(log) && first.exitCode === null && !first.killed) first.kill('SIGKILL')
    })
    first.on('exit', (code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the first run ended on its own (${code}) before it could be killed:\n${log}`))))
  })
  await killed
  assert.ok(jobId !== undefined, log)

  // What the crash left: some accepted results, agreements open.
  const before = openStore({ path: join(dir, 'requestor', 'node.db') })
  const doneBefore = before.taskResults.listByJob(jobId).length
  const firstAgreements = before.agreements.list().filter((r) => (r.document as Agreement).terms.jobName.endsWith(`(${jobId})`)).map((r) => r.id)
  before.close()
  assert.ok(doneBefore > 0 && doneBefore < 40, `done before the kill: ${doneBefore}`)
  assert.ok(firstAgreements.length > 0)

  // Second run: --resume with the same job file and data directory.
  const second = spawn(process.execPath, [hearth, ...args, '--resume', jobId, '--json'], { stdio: ['ignore', 'pipe', 'pipe'] })
  let stdout = ''
  let stderr = ''
  second.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()))
  second.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const code = await new Promise<number | null>((resolve) => second.on('exit', resolve))
  assert.equal(code, 0, stderr)
  const report = JSON.parse(stdout) as RunReport
  assert.equal(report.jobId, jobId)
  // Every tile exactly once: those done before were reused, only the rest ran now.
  assert.ok(report.verification.resumed >= doneBefore, JSON.stringify(report.verification))
  assert.equal(report.verification.resumed + report.verification.accepted, 40)
  const stored = openStore({ path: join(dir, 'requestor', 'node.db') })
  after(() => stored.close())
  assert.equal(stored.taskResults.listByJob(jobId).length, 40)

  // The money, read from the chain by the report's audit: this run's escrows and the first run's (settled now) balance,
  // and the tokens moved only between the requestor, the providers and the escrow.
  const { audit } = report
  assert.deepEqual(audit.problems, [])
  assert.equal(audit.balanced, true)
  assert.equal(audit.netTokenFlowWei, '0')
  const { depositedWei, paidWei, refundedWei, lockedWei } = report.payments
  assert.equal(BigInt(depositedWei), BigInt(paidWei) + BigInt(refundedWei) + BigInt(lockedWei))
  for (const a of audit.agreements) assert.equal(BigInt(a.depositedWei), BigInt(a.paidWei) + BigInt(a.refundedWei) + BigInt(a.lockedWei), a.agreementId)

  // The first run's agreements were settled from the results accepted then: each provider claimed exactly the last
  // voucher the requestor signed for it, and nothing more (the records compared with the chain, read twice over).
  const context = { client: funderClient, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress }
  for (const id of firstAgreements) {
    const agreement = stored.agreements.get(id)!.document as Agreement
    const escrow = await getEscrow(context, { requestorAddress: agreement.terms.requestor as Hex, agreementId: id as Hex })
    const voucher = stored.vouchers.latest(id)
    assert.ok(escrow !== undefined)
    assert.equal(escrow.claimedWei, voucher?.cumulativeWei ?? 0n, `agreement ${id}`)
    assert.ok(escrow.closed, `agreement ${id} settled`)
    const audited = audit.agreements.find((a) => a.agreementId.toLowerCase() === id.toLowerCase())
    assert.ok(audited !== undefined, `agreement ${id} audited`)
    assert.equal(BigInt(audited.paidWei), voucher?.cumulativeWei ?? 0n, `agreement ${id}`)
    assert.equal(audited.closed, true)
  }

  // The picture is the one a single process renders.
  const runtime = createWasiRuntime({ maxWorkers: 1 })
  after(() => runtime.close())
  const reference = await renderLocally({ runtime, width, height })
  const png = decodePng(await readFile(join(dir, 'out', 'render.png')))
  assert.equal(png.width, width)
  assert.ok(Buffer.from(png.rgb).equals(Buffer.from(reference)))
})
