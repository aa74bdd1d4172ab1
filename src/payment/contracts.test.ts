import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { contractsJsonPath, hearthEscrowAbi, hearthTokenAbi, loadContracts, loadTestContract } from './contracts.ts'

before(() => buildContracts())

const names = (abi: ReturnType<typeof hearthEscrowAbi>, type: string) =>
  abi.filter((item) => item.type === type).map((item) => (item as { name: string }).name)

describe('loadContracts', () => {
  it('reads both artifacts from build/contracts.json', () => {
    assert.match(contractsJsonPath, /build[\\/]contracts\.json$/)
    const { HearthToken, HearthEscrow } = loadContracts()
    assert.match(HearthToken.bytecode, /^0x[0-9a-f]+$/)
    assert.match(HearthEscrow.bytecode, /^0x[0-9a-f]+$/)
    assert.equal(loadContracts(), loadContracts())
  })

  it('exposes the escrow functions, events and custom errors the payment layer relies on', () => {
    const escrow = hearthEscrowAbi()
    for (const fn of ['open', 'openMany', 'topUp', 'claim', 'claimMany', 'release', 'refund', 'escrows', 'escrowKey', 'voucherDigest', 'token', 'claimGraceSec']) {
      assert.ok(names(escrow, 'function').includes(fn), fn)
    }
    for (const event of ['EscrowOpened', 'EscrowToppedUp', 'VoucherClaimed', 'EscrowReleased', 'EscrowRefunded']) {
      assert.ok(names(escrow, 'event').includes(event), event)
    }
    for (const error of ['EscrowAlreadyExists', 'EscrowNotFound', 'EmptyBatch', 'InvalidVoucherSignature', 'NothingToClaim', 'ClaimExceedsDeposit', 'RefundTooEarly', 'ReentrancyGuardReentrantCall']) {
      assert.ok(names(escrow, 'error').includes(error), error)
    }
    assert.ok(names(hearthTokenAbi(), 'function').includes('mint'))
    assert.ok(names(hearthTokenAbi(), 'function').includes('faucet'))
    assert.ok(names(hearthTokenAbi(), 'error').includes('FaucetDisabled'))
  })

  it('keeps test contracts out of the shipped artifacts', () => {
    assert.deepEqual(Object.keys(loadContracts()).sort(), ['HearthEscrow', 'HearthToken'])
    assert.match(loadTestContract('ReentrantToken').bytecode, /^0x[0-9a-f]+$/)
    assert.throws(() => loadTestContract('Nope'), /has no Nope/)
  })
})
