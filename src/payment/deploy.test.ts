import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { keccak256, parseEther, toHex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { createChainClient } from './chain-client.ts'
import { hearthEscrowAbi, hearthTokenAbi } from './contracts.ts'
import { deployHearthContracts } from './deploy.ts'
import { createEmbeddedChain } from './embedded-chain.ts'
import { voucherDigest } from './voucher.ts'

const deployerKey = keccak256(toHex('hearth-test-deployer'))
const deployer = privateKeyToAccount(deployerKey).address

before(() => buildContracts())

describe('deployHearthContracts', () => {
  it('deploys the token and an escrow bound to it, in two txs', async () => {
    const chain = await createEmbeddedChain({ chainId: 777, accounts: [{ address: deployer, balanceWei: parseEther('10') }] })
    const client = createChainClient({ transport: chain, privateKey: deployerKey, chainId: chain.chainId })
    const { tokenAddress, escrowAddress } = await deployHearthContracts(client)
    const read = (address: `0x${string}`, abi: ReturnType<typeof hearthTokenAbi>, functionName: string, args: unknown[] = []) =>
      client.publicClient.readContract({ address, abi, functionName, args })

    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'name'), 'Hearth Test Token')
    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'symbol'), 'HTT')
    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'decimals'), 18)
    assert.equal(await read(tokenAddress, hearthTokenAbi(), 'owner'), deployer)
    assert.equal(await read(escrowAddress, hearthEscrowAbi(), 'token'), tokenAddress)
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
})
