import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Command } from 'commander'
import { parseEther } from 'viem'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { runDeployCommand, startChain } from './chain-command.ts'
import type { RunningChain } from './chain-command.ts'
import { createChainClient } from '../payment/chain-client.ts'
import { tokenBalanceOf } from '../payment/escrow.ts'
import { generateIdentity } from '../identity/node-identity.ts'
import { registerWalletCommand, runWalletCommand } from './wallet-command.ts'
import { capture, hearth } from './testdata/run-cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-wallet-test-'))
after(() => rm(dir, { recursive: true, force: true }))
before(() => buildContracts())



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
    await assert.rejects(runWalletCommand({ dataDir, faucet: true }, capture().io), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CLI_ARGUMENT_INVALID'))
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

  describe('send', () => {
    /** Balances read from the chain, not from what the command printed. */
    async function balanceOf(address: `0x${string}`): Promise<bigint> {
      const client = createChainClient({ transport: running.url, privateKey: running.accounts[0]!.privateKey, chainId: running.chainId })
      return tokenBalanceOf({ client, tokenAddress: running.deployment.tokenAddress, escrowAddress: running.deployment.escrowAddress }, address)
    }

    it('moves tokens from the node key to an address; both balances change by the amount on chain', async () => {
      const dataDir = join(dir, 'sender')
      const funded = await runWalletCommand({ dataDir, deployment, faucet: true, faucetWei: parseEther('20') }, capture().io)
      const cold = generateIdentity().address
      const before = await balanceOf(funded.address)
      const sent = await hearth(['wallet', 'send', '--data-dir', dataDir, '--deployment', deployment, '--to', cold.toLowerCase(), '--amount', '12.5', '--json'])
      assert.equal(sent.code, 0, sent.stderr)
      const report = JSON.parse(sent.stdout) as { from: string; to: string; amountWei: string; txHash: string; fromBalanceWei: string; toBalanceWei: string }
      assert.equal(report.from, funded.address)
      assert.equal(report.to, cold)
      assert.equal(report.amountWei, parseEther('12.5').toString())
      assert.match(report.txHash, /^0x[0-9a-f]{64}$/)
      assert.equal(await balanceOf(funded.address), before - parseEther('12.5'))
      assert.equal(await balanceOf(cold), parseEther('12.5'))
      assert.equal(report.fromBalanceWei, (before - parseEther('12.5')).toString())

      // The wallet's own options may also stand before `send`; text output names the amount and both ends.
      const text = await hearth(['wallet', '--data-dir', dataDir, '--deployment', deployment, 'send', '--to', cold, '--amount', '0.5'])
      assert.equal(text.code, 0, text.stderr)
      assert.match(text.stdout, new RegExp(`sent\\s+0\\.5 HTT from ${funded.address} to ${cold}`))
      assert.equal(await balanceOf(cold), parseEther('13'))
    })

    it('sends from --key-file; refuses a key file others can read with exit 2, sending nothing', async () => {
      const keyPath = join(dir, 'spender.key')
      await writeFile(keyPath, `${running.accounts[0]!.privateKey}\n`, { mode: 0o600 })
      await chmod(keyPath, 0o600)
      const to = generateIdentity().address
      const ok = await hearth(['wallet', 'send', '--key-file', keyPath, '--deployment', deployment, '--to', to, '--amount', '3', '--json'])
      assert.equal(ok.code, 0, ok.stderr)
      assert.equal(await balanceOf(to), parseEther('3'))

      await chmod(keyPath, 0o644)
      const before = await balanceOf(running.accounts[0]!.address)
      const refused = await hearth(['wallet', 'send', '--key-file', keyPath, '--deployment', deployment, '--to', to, '--amount', '3'])
      assert.equal(refused.code, 2)
      assert.match(refused.stderr, /spender\.key is accessible by group or others \(mode 0644\)/)
      assert.match(refused.stderr, /chmod 600/)
      assert.equal(await balanceOf(to), parseEther('3'))
      assert.equal(await balanceOf(running.accounts[0]!.address), before)
    })

    it('refuses a malformed address or amount, two keys at once, and more than the balance, naming the problem', async () => {
      const dataDir = join(dir, 'sender')
      const to = generateIdentity().address
      const mixedCaseTypo = `${to.slice(0, -1)}${to.at(-1) === 'a' ? 'b' : 'a'}`.replace(/[a-f]/, (c) => c.toUpperCase())
      const cases: [string[], RegExp][] = [
        [['--to', '0x1234', '--amount', '1'], /--to: expected a 0x-prefixed address of 40 hex digits, got "0x1234"/],
        [['--to', to.slice(2), '--amount', '1'], /--to: expected a 0x-prefixed address/],
        [['--to', mixedCaseTypo, '--amount', '1'], /fails its checksum/],
        [['--to', `0x${'0'.repeat(40)}`, '--amount', '1'], /the zero address burns/],
        [['--to', to, '--amount', '-1'], /--amount: expected a decimal number of HTT/],
        [['--to', to, '--amount', '1e3'], /--amount: expected a decimal number of HTT/],
        [['--to', to, '--amount', '0.0000000000000000001'], /at most 18 decimals/],
        [['--to', to, '--amount', '0'], /--amount: expected more than 0 HTT/],
        [['--to', to, '--amount', '1', '--key-file', join(dir, 'spender.key')], /--key-file and --data-dir both name a key/],
      ]
      for (const [args, message] of cases) {
        const result = await hearth(['wallet', 'send', '--data-dir', dataDir, '--deployment', deployment, ...args])
        assert.equal(result.code, 2, `${args.join(' ')}: ${result.stderr}`)
        assert.match(result.stderr, message)
      }
      assert.equal(await balanceOf(to), 0n)
      // A data directory without a key holds nothing to send: no fresh key is made for it.
      const empty = await hearth(['wallet', 'send', '--data-dir', join(dir, 'no-key-here'), '--deployment', deployment, '--to', to, '--amount', '1'])
      assert.equal(empty.code, 2)
      assert.match(empty.stderr, /Cannot read the node key file/)
      // More than the balance: refused before any transaction, exit 1.
      const tooMuch = await hearth(['wallet', 'send', '--data-dir', dataDir, '--deployment', deployment, '--to', to, '--amount', '1000000'])
      assert.equal(tooMuch.code, 1)
      assert.match(tooMuch.stderr, /less than the 1000000 HTT to send; nothing was sent/)
      assert.equal(await balanceOf(to), 0n)
    })
  })
})
