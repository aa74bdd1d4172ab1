/**
 * Settlement on an EVM chain reached only by JSON-RPC over HTTP: a chain in its own server, contracts deployed with
 * the deploy code, a token without faucet (tokens come from the deployer's supply), and the demo run against it.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { parseEther } from 'viem'
import { main } from '../src/cli/main.ts'
import type { DemoReport } from '../src/devnet/demo.ts'
import { generateIdentity } from '../src/identity/node-identity.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import { deployHearth, writeDeploymentFile } from '../src/payment/deploy.ts'
import { createEmbeddedChain, serveChainHttp } from '../src/payment/embedded-chain.ts'
import { tokenBalanceOf } from '../src/payment/escrow.ts'

test('hearth demo settles on a chain it reaches only by JSON-RPC, with the deployment and a funding key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'hearth-external-'))
  after(() => rm(dir, { recursive: true, force: true }))
  const funder = generateIdentity()
  const chain = await createEmbeddedChain({ chainId: 31337, accounts: [{ address: funder.address, balanceWei: parseEther('100') }] })
  after(() => chain.close())
  const server = await serveChainHttp(chain, { port: 0 })
  after(() => server.close())

  const client = createChainClient({ transport: server.url, privateKey: funder.privateKey, chainId: 31337 })
  const deployment = await deployHearth(client, { faucet: false, initialSupplyWei: parseEther('50') })
  await writeDeploymentFile(join(dir, 'deployment.json'), deployment)
  await writeFile(join(dir, 'funder.key'), `${funder.privateKey}\n`, { mode: 0o600 })

  const stdout = new PassThrough()
  const chunks: Buffer[] = []
  stdout.on('data', (c: Buffer) => chunks.push(c))
  const code = await main(
    ['demo', '--providers', '2', '--tasks', '4', '--width', '32', '--height', '16', '--out', join(dir, 'out'), '--json',
      '--rpc', server.url, '--deployment', join(dir, 'deployment.json'), '--funder-key-file', join(dir, 'funder.key')],
    { stdout, stderr: new PassThrough() },
  )
  assert.equal(code, 0)
  const report = JSON.parse(Buffer.concat(chunks).toString()) as DemoReport
  assert.equal(report.tasks.succeeded, 4)
  assert.equal(report.image.identicalToLocalRender, true)
  // The figures are the chain audit's, read over JSON-RPC: every escrow balances, tokens stayed between the parties.
  assert.deepEqual(report.audit.problems, [])
  assert.equal(report.audit.balanced, true)
  assert.equal(report.audit.recordsMatchChain, true)
  const { depositedWei, paidWei, refundedWei, lockedWei } = report.payments
  assert.equal(BigInt(depositedWei), BigInt(paidWei) + BigInt(refundedWei) + BigInt(lockedWei))
  assert.ok(BigInt(paidWei) > 0n)
  // Read once more here, apart from the report: the chain behind the URL holds the providers' pay (fresh accounts).
  const context = { client, tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress }
  for (const provider of report.providers) assert.equal(await tokenBalanceOf(context, provider.address), BigInt(provider.paidWei))
})

test('a half-given external chain is refused with exit code 2', async () => {
  const stderr = new PassThrough()
  const chunks: Buffer[] = []
  stderr.on('data', (c: Buffer) => chunks.push(c))
  assert.equal(await main(['demo', '--rpc', 'http://127.0.0.1:1'], { stdout: new PassThrough(), stderr }), 2)
  assert.match(Buffer.concat(chunks).toString(), /needs --rpc, --deployment and --funder-key-file together/)
})
