import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, before, describe, it } from 'node:test'
import { Command } from 'commander'
import { parseEther } from 'viem'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { runDeployCommand, startChain } from './chain-command.ts'
import type { RunningChain } from './chain-command.ts'
import { registerWalletCommand, runWalletCommand } from './wallet-command.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-wallet-test-'))
after(() => rm(dir, { recursive: true, force: true }))
before(() => buildContracts())

function capture() {
  const stdout = new PassThrough()
  const chunks: Buffer[] = []
  stdout.on('data', (c: Buffer) => chunks.push(c))
  return { io: { stdout, stderr: new PassThrough() }, text: () => Buffer.concat(chunks).toString('utf8') }
}

describe('hearth wallet', () => {
  let running: RunningChain
  const deployment = join(dir, 'deployment.json')
  before(async () => {
    running = await startChain({ port: 0, accounts: 1, deploymentOut: deployment }, capture().io)
  })
  after(() => running.close())

  it('without a chain: the node address from its key file, created on first use and stable after', async () => {
    const dataDir = join(dir, 'offline')
    const out = capture()
    const first = await runWalletCommand({ dataDir }, out.io)
    assert.match(first.address, /^0x[0-9a-fA-F]{40}$/)
    assert.equal(first.chain, null)
    assert.match(out.text(), /not connected/)
    assert.equal((await runWalletCommand({ dataDir }, capture().io)).address, first.address)
    await assert.rejects(runWalletCommand({ dataDir, faucet: true }, capture().io), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID'))
  })

  it('with a deployment file: native and token balances; --faucet funds gas and mints on the development chain', async () => {
    const dataDir = join(dir, 'node-a')
    const empty = await runWalletCommand({ dataDir, deployment }, capture().io)
    assert.equal(empty.chain?.rpcUrl, running.url)
    assert.equal(empty.chain?.chainId, 31337)
    assert.deepEqual([empty.chain?.nativeWei, empty.chain?.token?.balanceWei, empty.chain?.token?.faucet], ['0', '0', true])

    const out = capture()
    const funded = await runWalletCommand({ dataDir, deployment, faucet: true, faucetWei: parseEther('25') }, out.io)
    assert.equal(funded.address, empty.address)
    assert.equal(funded.chain?.token?.balanceWei, parseEther('25').toString())
    assert.equal(funded.faucet?.gasFundedWei, parseEther('10').toString())
    assert.ok(BigInt(funded.chain!.nativeWei) > 0n && BigInt(funded.chain!.nativeWei) < parseEther('10'), 'the mint paid gas')
    assert.match(out.text(), /token\s+25\.0? HTT|token\s+25 HTT/)
    // A second faucet call needs no more gas.
    const again = await runWalletCommand({ dataDir, deployment, faucet: true, json: true }, capture().io)
    assert.equal(again.faucet?.gasFundedWei, '0')
    assert.equal(again.chain?.token?.balanceWei, parseEther('1025').toString())
  })

  it('refuses the faucet on a token deployed without one, and a deployment for another chain', async () => {
    const keyPath = join(dir, 'deployer.key')
    await writeFile(keyPath, running.accounts[0]!.privateKey, { mode: 0o600 })
    await chmod(keyPath, 0o600)
    const realFile = join(dir, 'real.json')
    await runDeployCommand({ rpc: running.url, keyFile: keyPath, out: realFile, faucet: false }, capture().io)
    const dataDir = join(dir, 'node-b')
    await assert.rejects(runWalletCommand({ dataDir, deployment: realFile, faucet: true }, capture().io), (error: unknown) =>
      isHearthError(error, 'HEARTH_ERR_PAYMENT_FAUCET_DISABLED'),
    )
    const other = await startChain({ port: 0, accounts: 1, chainId: 4242 }, capture().io)
    try {
      await assert.rejects(runWalletCommand({ dataDir, deployment, rpc: other.url }, capture().io), (error: unknown) =>
        isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /chain 31337/.test(error.message),
      )
    } finally {
      await other.close()
    }
  })

  it('registers as a commander subcommand with --json', async () => {
    const out = capture()
    const program = new Command('hearth').exitOverride()
    registerWalletCommand(program, out.io)
    await program.parseAsync(['wallet', '--data-dir', join(dir, 'node-c'), '--deployment', deployment, '--json'], { from: 'user' })
    const report = JSON.parse(out.text()) as { address: string; chain: { token: { balanceWei: string } } }
    assert.equal(report.chain.token.balanceWei, '0')
  })
})
