import assert from 'node:assert/strict'
import { before, describe, it } from 'node:test'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { contractsJsonPath, hearthEscrowAbi, hearthTokenAbi, loadContracts } from './contracts.ts'

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
    for (const fn of ['open', 'topUp', 'claim', 'refund', 'escrows', 'voucherDigest', 'token']) {
      assert.ok(names(escrow, 'function').includes(fn), fn)
    }
    for (const event of ['EscrowOpened', 'EscrowToppedUp', 'VoucherClaimed', 'EscrowReleased', 'EscrowRefunded']) {
      assert.ok(names(escrow, 'event').includes(event), event)
    }
    for (const error of ['EscrowAlreadyExists', 'InvalidVoucherSignature', 'NothingToClaim', 'ClaimExceedsDeposit', 'NotExpired']) {
      assert.ok(names(escrow, 'error').includes(error), error)
    }
    assert.ok(names(hearthTokenAbi(), 'function').includes('mint'))
  })
})
