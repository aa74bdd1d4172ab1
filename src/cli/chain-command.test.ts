import assert from 'node:assert/strict'
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Command } from 'commander'
import { createPublicClient, http, parseEther } from 'viem'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { createChainClient } from '../payment/chain-client.ts'
import { hearthEscrowAbi, hearthTokenAbi } from '../payment/contracts.ts'
import { readDeploymentFile } from '../payment/deploy.ts'
import { escrowClaimGraceSec, tokenBalanceOf } from '../payment/escrow.ts'
import { devAccountKey, registerChainCommands, runDeployCommand, startChain } from './chain-command.ts'
import type { RunningChain } from './chain-command.ts'
import { capture } from './testdata/run-cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-chain-command-test-'))
after(() => rm(dir, { recursive: true, force: true }))
before(() => buildContracts())


async function keyFile(name: string, key: string, mode = 0o600): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, `${key}\n`, { mode })
  await chmod(path, mode)
  return path
}

describe('hearth chain', () => {
  let running: RunningChain
  let printed: string
  before(async () => {
    const out = capture()
    running = await startChain({ port: 0, accounts: 3, deploymentOut: join(dir, 'chain.json') }, out.io)
    printed = out.text()
  })
  after(() => running.close())

  it('prints the URL, chain id, contracts and funded dev keys', () => {
    assert.match(running.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    assert.ok(printed.includes(running.url))
    assert.match(printed, /chain id\s+31337/)
    assert.ok(printed.includes(running.deployment.tokenAddress) && printed.includes(running.deployment.escrowAddress))
    assert.match(printed, /DEVELOPMENT ONLY/)
    assert.equal(running.accounts.length, 3)
    for (const account of running.accounts) assert.ok(printed.includes(account.privateKey))
    assert.equal(running.accounts[0]!.privateKey, devAccountKey(0))
    assert.match(printed, /grace\s+86400 s \(refund from expiry \+ 24 h; the provider can claim until then\)/)
  })

  it('serves one chain to other processes over JSON-RPC: funded accounts, deployed contracts, a deployment file', async () => {
    const remote = createPublicClient({ transport: http(running.url, { retryCount: 0 }) })
    assert.equal(await remote.getChainId(), 31337)
    const file = await readDeploymentFile(join(dir, 'chain.json'))
    assert.equal(file.rpcUrl, running.url)
    assert.equal(file.escrowAddress, running.deployment.escrowAddress)
    assert.equal(file.faucet, true)
    // The default claim grace, recorded in the file and enforced by the contract.
    assert.equal(file.claimGraceSec, 86_400)
    assert.equal(await escrowClaimGraceSec({ client: createChainClient({ transport: running.url, privateKey: running.accounts[0]!.privateKey, chainId: 31337 }), ...file }), 86_400n)
    for (const account of running.accounts) {
      assert.equal(await remote.getBalance({ address: account.address }), parseEther('10000'))
      const client = createChainClient({ transport: running.url, privateKey: account.privateKey, chainId: 31337 })
      assert.equal(await tokenBalanceOf({ client, ...file }, account.address), parseEther('1000000'))
    }
    assert.equal(await remote.readContract({ address: file.escrowAddress, abi: hearthEscrowAbi(), functionName: 'token' }), file.tokenAddress)
  })

  it('hearth deploy --rpc URL --key-file F deploys over HTTP and writes a deployment JSON', async () => {
    const key = await keyFile('deployer.key', running.accounts[1]!.privateKey)
    const out = capture()
    const record = await runDeployCommand({ rpc: running.url, keyFile: key, out: join(dir, 'deployed.json'), claimGraceSec: 3600 }, out.io)
    assert.equal(record.chainId, 31337)
    assert.equal(record.claimGraceSec, 3600)
    assert.match(out.text(), /grace\s+3600 s \(refund from expiry \+ 1 h/)
    assert.equal(record.deployer, running.accounts[1]!.address)
    assert.equal(record.faucet, true, 'chain id 31337 is a development chain')
    assert.deepEqual(await readDeploymentFile(join(dir, 'deployed.json')), record)
    assert.match(out.text(), /written to\s+.*deployed\.json/)
    const remote = createPublicClient({ transport: http(running.url, { retryCount: 0 }) })
    assert.equal(await remote.readContract({ address: record.escrowAddress, abi: hearthEscrowAbi(), functionName: 'token' }), record.tokenAddress)
    assert.equal(await remote.readContract({ address: record.escrowAddress, abi: hearthEscrowAbi(), functionName: 'claimGraceSec' }), 3600n)
    assert.notEqual(record.escrowAddress, running.deployment.escrowAddress)

    // --no-faucet and an initial supply: a token that can never mint more.
    const real = await runDeployCommand({ rpc: running.url, keyFile: key, out: join(dir, 'real.json'), faucet: false, initialSupplyWei: 7n, json: true }, capture().io)
    assert.equal(await remote.readContract({ address: real.tokenAddress, abi: hearthTokenAbi(), functionName: 'faucet' }), false)
    assert.equal(await remote.readContract({ address: real.tokenAddress, abi: hearthTokenAbi(), functionName: 'totalSupply' }), 7n)
  })

  it('hearth deploy refuses a key file others can read, and a cap below the chain\'s fee', async () => {
    const open = await keyFile('open.key', running.accounts[1]!.privateKey, 0o644)
    await assert.rejects(runDeployCommand({ rpc: running.url, keyFile: open }, capture().io), (error: unknown) => isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY'))
    const key = await keyFile('capped.key', running.accounts[2]!.privateKey)
    await assert.rejects(
      runDeployCommand({ rpc: running.url, keyFile: key, out: join(dir, 'never.json'), maxFeePerGasWei: 1n }, capture().io),
      (error: unknown) => isHearthError(error, 'HEARTH_ERR_PAYMENT_FEE_TOO_HIGH'),
    )
    await assert.rejects(readFile(join(dir, 'never.json')))
  })

  it('registers as commander subcommands: deploy --json prints the record; bad options are refused', async () => {
    const key = await keyFile('cli.key', running.accounts[2]!.privateKey)
    const out = capture()
    const program = new Command('hearth').exitOverride().configureOutput({ writeOut: () => {}, writeErr: () => {} })
    registerChainCommands(program, out.io)
    await program.parseAsync(['deploy', '--rpc', running.url, '--key-file', key, '--out', join(dir, 'cli.json'), '--claim-grace-sec', '0', '--json'], { from: 'user' })
    const printed = JSON.parse(out.text()) as { escrowAddress: string; deploymentFile: string; claimGraceSec: number }
    const file = await readDeploymentFile(join(dir, 'cli.json'))
    assert.equal(printed.escrowAddress, file.escrowAddress)
    assert.deepEqual([printed.claimGraceSec, file.claimGraceSec], [0, 0])
    await assert.rejects(program.parseAsync(['deploy', '--rpc', 'not-a-url', '--key-file', key], { from: 'user' }), /--rpc must be an http/)
    for (const grace of ['-1', '1.5', '2592001']) {
      await assert.rejects(
        program.parseAsync(['deploy', '--rpc', running.url, '--key-file', key, '--claim-grace-sec', grace], { from: 'user' }),
        /--claim-grace-sec must be a whole number from 0 to 2592000/,
      )
    }
  })
})

describe('hearth chain as a command', () => {
  it('runs until stopped, printing JSON', async () => {
    const out = capture()
    const stop = new AbortController()
    const program = new Command('hearth').exitOverride()
    registerChainCommands(program, out.io, { stopSignal: stop.signal })
    const done = program.parseAsync(['chain', '--port', '0', '--accounts', '1', '--chain-id', '4242', '--claim-grace-sec', '120', '--json'], { from: 'user' })
    while (!out.text().includes('\n')) await new Promise((resolve) => setTimeout(resolve, 20))
    const report = JSON.parse(out.text()) as { url: string; chainId: number; claimGraceSec: number; accounts: unknown[] }
    assert.equal(report.chainId, 4242)
    assert.equal(report.claimGraceSec, 120)
    assert.equal(report.accounts.length, 1)
    const remote = createPublicClient({ transport: http(report.url, { retryCount: 0 }) })
    assert.equal(await remote.getChainId(), 4242)
    stop.abort()
    await done
    await assert.rejects(remote.getChainId(), 'the server is closed')
  })
})
