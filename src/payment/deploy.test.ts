import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { keccak256, parseEther, toHex } from 'viem'
import type { Address } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { isHearthError } from '../errors.ts'
import { createChainClient } from './chain-client.ts'
import { hearthEscrowAbi, hearthTokenAbi } from './contracts.ts'
import { defaultClaimGraceSec, deployHearth, deployHearthContracts, maxClaimGraceSec, readDeploymentFile, writeDeploymentFile } from './deploy.ts'
import { createEmbeddedChain } from './embedded-chain.ts'
import { escrowClaimGraceSec } from './escrow.ts'
import { voucherDigest } from './voucher.ts'

const deployerKey = keccak256(toHex('hearth-test-deployer'))
const deployer = privateKeyToAccount(deployerKey).address

const dir = await mkdtemp(join(tmpdir(), 'hearth-deploy-test-'))
after(() => rm(dir, { recursive: true, force: true }))
before(() => buildContracts())

async function clientOn(chainId: number) {
  const chain = await createEmbeddedChain({ chainId, accounts: [{ address: deployer, balanceWei: parseEther('10') }] })
  return createChainClient({ transport: chain, privateKey: deployerKey, chainId: chain.chainId })
}

describe('deployHearthContracts', () => {
  it('deploys the token and an escrow bound to it, in two txs', async () => {
    const client = await clientOn(777)
    const { tokenAddress, escrowAddress, faucet, claimGraceSec } = await deployHearthContracts(client)
    const read = (address: `0x${string}`, abi: ReturnType<typeof hearthTokenAbi>, functionName: string, args: unknown[] = []) =>
      client.publicClient.readContract({ address, abi, functionName, args })

    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'name'), 'Hearth Test Token')
    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'symbol'), 'HTT')
    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'decimals'), 18)
    // 777 is not a known development chain id: no faucet unless asked.
    assert.equal(faucet, false)
    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'faucet'), false)
    assert.equal(await read(escrowAddress, hearthEscrowAbi(), 'token'), tokenAddress)
    // The default claim grace: a day after expiry in which the provider can still claim.
    assert.equal(claimGraceSec, 86_400)
    assert.equal(await read(escrowAddress, hearthEscrowAbi(), 'claimGraceSec'), 86_400n)
    assert.deepEqual(client.ledger.map((entry) => entry.label), ['deploy.HearthToken', 'deploy.HearthEscrow'])

    // The contract's EIP-712 domain is the one voucher.ts signs under.
    const agreementId = keccak256(toHex('agreement'))
    assert.equal(
      await read(escrowAddress, hearthEscrowAbi(), 'voucherDigest', [agreementId, 123n]),
      voucherDigest({ chainId: 777, escrowAddress, agreementId, cumulativeWei: 123n }),
    )
    const domain = (await read(escrowAddress, hearthEscrowAbi(), 'eip712Domain')) as readonly unknown[]
    assert.deepEqual(domain.slice(1, 5), ['HearthEscrow', '1', 777n, escrowAddress])
  })

  it('turns the faucet on by default only on development chain ids, and refuses it on public chains', async () => {
    const dev = await clientOn(31337)
    const onDev = await deployHearthContracts(dev)
    assert.equal(onDev.faucet, true)
    assert.equal(await dev.publicClient.readContract({ address: onDev.tokenAddress, abi: hearthTokenAbi(), functionName: 'faucet' }), true)
    assert.equal((await deployHearthContracts(dev, { faucet: false })).faucet, false)

    // Chain id 1 (Ethereum mainnet), simulated: the deploy refuses before sending anything.
    const mainnet = await clientOn(1)
    await assert.rejects(deployHearthContracts(mainnet, { faucet: true }), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CLI_ARGUMENT_INVALID'))
    assert.equal(mainnet.ledger.length, 0)
    const real = await deployHearth(mainnet, { initialSupplyWei: parseEther('1000000') })
    assert.equal(real.faucet, false)
    assert.equal(
      await mainnet.publicClient.readContract({ address: real.tokenAddress, abi: hearthTokenAbi(), functionName: 'balanceOf', args: [deployer] }),
      parseEther('1000000'),
    )
  })

  it('binds the escrow to an existing token (one tx), and refuses an address without code', async () => {
    const client = await clientOn(31337)
    const first = await deployHearthContracts(client)
    const record = await deployHearth(client, { tokenAddress: first.tokenAddress })
    assert.equal(record.tokenDeployed, false)
    assert.equal(record.faucet, false)
    assert.deepEqual(record.transactions.map((t) => t.label), ['deploy.HearthEscrow'])
    assert.equal(await client.publicClient.readContract({ address: record.escrowAddress, abi: hearthEscrowAbi(), functionName: 'token' }), first.tokenAddress)
    await assert.rejects(
      deployHearth(client, { tokenAddress: '0x000000000000000000000000000000000000dEaD' }),
      (error: unknown) => isHearthError(error, 'HEARTH_ERR_CLI_ARGUMENT_INVALID') && /no contract/.test(error.message),
    )
  })
})

describe('the escrow\'s claim grace at deployment', () => {
  it('is passed to the contract and recorded as the contract reports it', async () => {
    const client = await clientOn(31337)
    assert.equal(defaultClaimGraceSec, 86_400)
    for (const claimGraceSec of [0, 3600, maxClaimGraceSec]) {
      const record = await deployHearth(client, { claimGraceSec })
      assert.equal(record.claimGraceSec, claimGraceSec)
      assert.equal(await escrowClaimGraceSec({ client, escrowAddress: record.escrowAddress }), BigInt(claimGraceSec))
    }
  })

  it('refuses a grace that is negative, fractional or longer than 30 days, before sending anything', async () => {
    const client = await clientOn(31337)
    for (const claimGraceSec of [-1, 1.5, Number.NaN, maxClaimGraceSec + 1]) {
      await assert.rejects(
        deployHearth(client, { claimGraceSec }),
        (error: unknown) => isHearthError(error, 'HEARTH_ERR_CLI_ARGUMENT_INVALID') && /claim grace/.test(error.message),
      )
    }
    assert.equal(client.ledger.length, 0)
  })
})

describe('deployment files', () => {
  it('round-trips a deployment record, and refuses a malformed or missing one', async () => {
    const client = await clientOn(31337)
    const record = { ...(await deployHearth(client, { claimGraceSec: 7200 })), rpcUrl: 'http://127.0.0.1:8545' }
    assert.equal(record.deployer, deployer)
    assert.equal(record.claimGraceSec, 7200)
    assert.match(record.blockNumber, /^[0-9]+$/)
    assert.equal(record.transactions.length, 2)
    const file = join(dir, 'nested', 'deployment.json')
    await writeDeploymentFile(file, record)
    assert.deepEqual(await readDeploymentFile(file), record)

    const bad = join(dir, 'bad.json')
    await writeFile(bad, JSON.stringify({ ...record, escrowAddress: 'nope' }))
    await assert.rejects(readDeploymentFile(bad), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /escrowAddress/.test(error.message))
    await assert.rejects(readDeploymentFile(join(dir, 'missing.json')), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID'))
    // A file from before the claim grace: its escrow lets a requestor refund ahead of the provider's last claim.
    const { claimGraceSec: _dropped, ...withoutGrace } = record
    const old = join(dir, 'old.json')
    await writeFile(old, JSON.stringify(withoutGrace))
    await assert.rejects(
      readDeploymentFile(old),
      (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /claimGraceSec/.test(error.message) && /deploy again/.test(error.hint ?? ''),
    )
    await writeFile(bad, JSON.stringify({ ...record, claimGraceSec: -5 }))
    await assert.rejects(readDeploymentFile(bad), (error: unknown) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID') && /claimGraceSec/.test(error.message))
    const lower = { ...record, tokenAddress: record.tokenAddress.toLowerCase() as Address }
    await writeDeploymentFile(file, lower)
    assert.equal((await readDeploymentFile(file)).tokenAddress, record.tokenAddress)
  })
})
