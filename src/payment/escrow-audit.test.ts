/**
 * The chain audit against a real local chain and the real contracts: it reads the money path of a requestor's escrows
 * from events, escrow state and balances, and it fails when tokens move outside the escrows, when the events read do
 * not explain the escrow's state, or when an agreement has no escrow at all.
 */
import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { keccak256, parseEther, toHex } from 'viem'
import type { Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { createChainClient } from './chain-client.ts'
import { deployHearthContracts } from './deploy.ts'
import { createEmbeddedChain } from './embedded-chain.ts'
import type { EmbeddedChain } from './embedded-chain.ts'
import {
  approveEscrow,
  chainTimeSec,
  claimVoucher,
  mintTokens,
  openEscrows,
  refundEscrow,
  topUpEscrow,
  transferTokens,
} from './escrow.ts'
import type { EscrowContext } from './escrow.ts'
import { auditEscrows, snapshotTokenBalances } from './escrow-audit.ts'
import type { TokenSnapshot } from './escrow-audit.ts'
import { signVoucher } from './voucher.ts'

const keys = {
  deployer: keccak256(toHex('hearth-audit-deployer')),
  requestor: keccak256(toHex('hearth-audit-requestor')),
  alice: keccak256(toHex('hearth-audit-provider-alice')),
  bob: keccak256(toHex('hearth-audit-provider-bob')),
}
const address = {
  requestor: privateKeyToAccount(keys.requestor).address,
  alice: privateKeyToAccount(keys.alice).address,
  bob: privateKeyToAccount(keys.bob).address,
}
const claimGraceSec = 60

interface World {
  chain: EmbeddedChain
  deployer: EscrowContext
  requestor: EscrowContext
  alice: EscrowContext
  bob: EscrowContext
}

let w: World
let labels = 0

before(async () => {
  await buildContracts()
  const chain = await createEmbeddedChain({
    accounts: [keys.deployer, keys.requestor, keys.alice, keys.bob].map((key) => ({ address: privateKeyToAccount(key).address, balanceWei: parseEther('10') })),
  })
  const clientOf = (privateKey: Hex) => createChainClient({ transport: chain, privateKey, chainId: chain.chainId })
  const deployment = await deployHearthContracts(clientOf(keys.deployer), { faucet: true, claimGraceSec })
  const ctx = (key: Hex): EscrowContext => ({ client: clientOf(key), tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress })
  w = { chain, deployer: ctx(keys.deployer), requestor: ctx(keys.requestor), alice: ctx(keys.alice), bob: ctx(keys.bob) }
  await mintTokens(w.deployer, { toAddress: address.requestor, amountWei: parseEther('1000') })
  await approveEscrow(w.requestor)
})

/** Fresh agreement ids, so each test's escrows are its own on the shared chain. */
function newIds(n: number): Hex[] {
  return Array.from({ length: n }, () => keccak256(toHex(`agreement-${++labels}`)))
}

async function voucher(agreementId: Hex, cumulativeWei: bigint) {
  return signVoucher({ privateKey: keys.requestor, chainId: w.chain.chainId, escrowAddress: w.requestor.escrowAddress, agreementId, cumulativeWei })
}

function snapshot(): Promise<TokenSnapshot> {
  return snapshotTokenBalances(w.requestor, { addresses: [address.requestor, address.alice, address.bob] })
}

/** A job: two escrows opened in one transaction; alice claims part and releases the rest, bob claims part and keeps it open. */
async function job(): Promise<{ ids: Hex[]; openTx: Hex }> {
  const ids = newIds(2)
  const expiresAtSec = (await chainTimeSec(w.requestor)) + 3600n
  const opened = await openEscrows(w.requestor, [
    { agreementId: ids[0]!, providerAddress: address.alice, amountWei: parseEther('10'), expiresAtSec },
    { agreementId: ids[1]!, providerAddress: address.bob, amountWei: parseEther('5'), expiresAtSec },
  ])
  await claimVoucher(w.alice, { voucher: await voucher(ids[0]!, parseEther('4')), release: true })
  await claimVoucher(w.bob, { voucher: await voucher(ids[1]!, parseEther('2')) })
  return { ids, openTx: opened.hash }
}

describe('auditEscrows: the money path read from the chain', () => {
  it('reads deposits, top-ups, claims, releases, refunds and what is locked, and the money balances', async () => {
    const before = await snapshot()
    const { ids, openTx } = await job()
    // A third escrow, topped up, claimed in part, then refunded once its expiry and the claim grace have passed.
    const [refunded] = newIds(1) as [Hex]
    const third = await openEscrows(w.requestor, [{ agreementId: refunded, providerAddress: address.alice, amountWei: parseEther('3'), expiresAtSec: (await chainTimeSec(w.requestor)) + 100n }])
    await topUpEscrow(w.requestor, { agreementId: refunded, amountWei: parseEther('1') })
    await claimVoucher(w.alice, { voucher: await voucher(refunded, parseEther('1')) })
    await w.chain.increaseTime(100 + claimGraceSec + 1)
    await refundEscrow(w.requestor, refunded)

    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: [...ids, refunded], openTxHashes: [openTx, third.hash], before })
    assert.deepEqual(audit.problems, [])
    assert.equal(audit.balanced, true)
    const [alice, bob, third3] = audit.agreements
    assert.deepEqual(
      [alice, bob, third3].map((a) => [a!.provider, a!.depositedWei, a!.paidWei, a!.refundedWei, a!.lockedWei, a!.closed]),
      [
        [address.alice, parseEther('10'), parseEther('4'), parseEther('6'), 0n, true],
        [address.bob, parseEther('5'), parseEther('2'), 0n, parseEther('3'), false],
        [address.alice, parseEther('4'), parseEther('1'), parseEther('3'), 0n, true],
      ],
    )
    assert.equal(alice!.openTx, openTx)
    // Where the money went, by transaction: alice's claim and the release that closed her escrow; bob's is open.
    assert.equal(alice!.claimTxs.length, 1)
    assert.match(alice!.closeTx ?? '', /^0x[0-9a-f]{64}$/)
    assert.equal(bob!.closeTx, null)
    assert.deepEqual(audit.totals, { depositedWei: parseEther('19'), paidWei: parseEther('7'), refundedWei: parseEther('9'), lockedWei: parseEther('3') })

    // Balances: the requestor lost deposits less refunds, each provider gained exactly its claims, the rest is locked.
    const tokens = audit.tokens!
    assert.equal(tokens.conserved, true)
    assert.equal(tokens.netWei, 0n)
    assert.equal(tokens.lockedChangeWei, parseEther('3'))
    const delta = (who: string) => tokens.balances.find((b) => b.address === who)?.deltaWei
    assert.equal(delta(address.requestor), -parseEther('10'))
    assert.equal(delta(address.alice), parseEther('5'))
    assert.equal(delta(address.bob), parseEther('2'))
  })

  it('scans from the earliest open transaction, not from genesis, and counts only what came after the snapshot', async () => {
    // An escrow opened and partly claimed before the snapshot, settled after it (a resumed job's earlier agreement).
    const { ids, openTx } = await job()
    const before = await snapshot()
    await claimVoucher(w.bob, { voucher: await voucher(ids[1]!, parseEther('5')), release: true })
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: ids, openTxHashes: [openTx], before })
    assert.deepEqual(audit.problems, [])
    const receipt = await w.requestor.client.publicClient.getTransactionReceipt({ hash: openTx })
    assert.equal(audit.fromBlock, receipt.blockNumber)
    assert.equal(audit.tokens!.balances.find((b) => b.address === address.bob)?.deltaWei, parseEther('3'))
    assert.equal(audit.tokens!.lockedChangeWei, -parseEther('3'))
  })

  it('fails when a provider gains tokens the escrows did not pay it (minted from the faucet during the job)', async () => {
    const before = await snapshot()
    const { ids, openTx } = await job()
    await mintTokens(w.alice, { toAddress: address.alice, amountWei: 7n })
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: ids, openTxHashes: [openTx], before })
    // The escrows themselves are in order: only the balances show the tokens that came from elsewhere.
    assert.equal(audit.escrowsBalanced, true)
    assert.equal(audit.balanced, false)
    assert.equal(audit.tokens!.conserved, false)
    assert.equal(audit.tokens!.netWei, 7n)
    const alice = audit.tokens!.balances.find((b) => b.address === address.alice)!
    assert.equal(alice.deltaWei! - alice.expectedDeltaWei, 7n)
    assert.ok(audit.problems.some((p) => p.includes(address.alice) && p.includes('moved by')), audit.problems.join('\n'))
    assert.ok(audit.problems.some((p) => p.includes('7 wei appeared')), audit.problems.join('\n'))
  })

  it('fails when the requestor pays a provider outside the escrow, though no token was created or lost', async () => {
    const before = await snapshot()
    const { ids, openTx } = await job()
    await transferTokens(w.requestor, { toAddress: address.bob, amountWei: parseEther('1') })
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: ids, openTxHashes: [openTx], before })
    assert.equal(audit.tokens!.netWei, 0n)
    assert.equal(audit.tokens!.conserved, false)
    assert.equal(audit.balanced, false)
    const mismatched = audit.tokens!.balances.filter((b) => !b.matches).map((b) => b.role).sort()
    assert.deepEqual(mismatched, ['provider', 'requestor'])
  })

  it('fails against a wrong record of a balance before the job', async () => {
    const real = await snapshot()
    const { ids, openTx } = await job()
    const balancesWei = new Map(real.balancesWei)
    balancesWei.set(address.bob, balancesWei.get(address.bob)! - 1n)
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: ids, openTxHashes: [openTx], before: { ...real, balancesWei } })
    assert.equal(audit.balanced, false)
    assert.equal(audit.tokens!.netWei, 1n)
  })

  it('fails when the events read do not explain the escrow state (a range that misses the open and a top-up)', async () => {
    const { ids } = await job()
    await topUpEscrow(w.requestor, { agreementId: ids[1]!, amountWei: parseEther('1') })
    const latest = await w.requestor.client.publicClient.getBlockNumber({ cacheTime: 0 })
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: ids, fromBlock: latest })
    assert.equal(audit.escrowsBalanced, false)
    assert.equal(audit.balanced, false)
    const bob = audit.agreements[1]!
    assert.equal(bob.balanced, false)
    // Only the top-up was read; the escrow stores the deposit and the claim the events in range do not show.
    assert.equal(bob.depositedWei, parseEther('1'))
    assert.equal(bob.lockedWei, parseEther('4'))
    assert.ok(audit.problems.some((p) => p.includes(ids[1]!) && p.includes('0 EscrowOpened events')), audit.problems.join('\n'))
    assert.ok(audit.problems.some((p) => p.includes(ids[1]!) && p.includes('stores a deposit of 6000000000000000000 wei')), audit.problems.join('\n'))
  })

  it('fails for an agreement the chain holds no escrow for, and for escrow activity it was not asked about', async () => {
    const before = await snapshot()
    const { ids, openTx } = await job()
    const [missing] = newIds(1) as [Hex]
    // Audits the first escrow and an id never opened; the second escrow moved tokens in the window unaudited.
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: [ids[0]!, missing], openTxHashes: [openTx], before })
    assert.equal(audit.balanced, false)
    assert.equal(audit.agreements[1]!.provider, null)
    assert.equal(audit.agreements[1]!.balanced, false)
    assert.ok(audit.problems.some((p) => p.includes(missing) && p.includes('no escrow')), audit.problems.join('\n'))
    assert.ok(audit.problems.some((p) => p.includes(ids[1]!) && p.includes('not audited')), audit.problems.join('\n'))
  })

  it('lets the events of a node\'s other escrows account for their tokens when told to, still to the wei', async () => {
    const before = await snapshot()
    const { ids, openTx } = await job()
    // The second escrow stands for a storage or service agreement of the same node, paid and topped up meanwhile.
    await topUpEscrow(w.requestor, { agreementId: ids[1]!, amountWei: parseEther('1') })
    const audit = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: [ids[0]!], openTxHashes: [openTx], before, otherEscrows: 'explained' })
    assert.equal(audit.balanced, true, audit.problems.join('\n'))
    assert.equal(audit.tokens!.netWei, 0n)
    // A wei its events do not explain still fails the audit.
    const balancesWei = new Map(before.balancesWei)
    balancesWei.set(address.bob, balancesWei.get(address.bob)! + 1n)
    const off = await auditEscrows(w.requestor, { requestorAddress: address.requestor, agreementIds: [ids[0]!], openTxHashes: [openTx], before: { ...before, balancesWei }, otherEscrows: 'explained' })
    assert.equal(off.balanced, false)
  })
})
