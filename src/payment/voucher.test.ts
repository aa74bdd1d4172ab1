import assert from 'node:assert/strict'
import { describe, it } from 'node:test'
import { getAddress, hexToBigInt, keccak256, numberToHex, sliceHex, toHex } from 'viem'
import type { Hex } from 'viem'
import { privateKeyToAccount } from 'viem/accounts'
import { isHearthError } from '../errors.ts'
import { signVoucher, verifyVoucher, voucherDigest, voucherFromJson, voucherToJson } from './voucher.ts'
import type { Voucher } from './voucher.ts'

const requestorKey = keccak256(toHex('hearth-test-requestor'))
const strangerKey = keccak256(toHex('hearth-test-stranger'))
const requestor = privateKeyToAccount(requestorKey)
const escrowAddress = getAddress('0x5fbdb2315678afecb367f032d93f642f64180aa3')
const otherEscrowAddress = getAddress('0xe7f1725e7734ce288f8367e1bb143e90bb3f0512')
const agreementId = keccak256(toHex('agreement-1'))
const chainId = 31337

const expectations = { expectedSigner: requestor.address, chainId, escrowAddress, agreementId }

async function sign(overrides: Partial<Parameters<typeof signVoucher>[0]> = {}): Promise<Voucher> {
  return signVoucher({ privateKey: requestorKey, chainId, escrowAddress, agreementId, cumulativeWei: 10n ** 18n, ...overrides })
}

/** Asserts a VOUCHER_INVALID HearthError whose details name the failed check. */
function rejectedFor(check: string) {
  return (error: unknown) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID'), String(error))
    assert.equal(error.details?.check, check)
    return true
  }
}

describe('signVoucher / verifyVoucher', () => {
  it('signs a voucher the requestor verifies against all expectations', async () => {
    const voucher = await sign()
    assert.equal(voucher.signer, requestor.address)
    assert.equal(voucher.cumulativeWei, 10n ** 18n)
    assert.match(voucher.signature, /^0x[0-9a-f]{130}$/)
    await verifyVoucher(voucher, expectations)
    await verifyVoucher(voucher, { ...expectations, maxCumulativeWei: 10n ** 18n })
  })

  it('the digest binds chain id, escrow contract, agreement and amount', () => {
    const base = { chainId, escrowAddress, agreementId, cumulativeWei: 5n }
    const digests = new Set([
      voucherDigest(base),
      voucherDigest({ ...base, chainId: 1 }),
      voucherDigest({ ...base, escrowAddress: otherEscrowAddress }),
      voucherDigest({ ...base, agreementId: keccak256(toHex('agreement-2')) }),
      voucherDigest({ ...base, cumulativeWei: 6n }),
    ])
    assert.equal(digests.size, 5)
  })

  it('rejects a voucher signed by the wrong key', async () => {
    const voucher = await sign({ privateKey: strangerKey })
    await assert.rejects(verifyVoucher(voucher, expectations), rejectedFor('signer'))
  })

  it('rejects a voucher whose signer field lies about who signed', async () => {
    const voucher = { ...(await sign({ privateKey: strangerKey })), signer: requestor.address }
    await assert.rejects(verifyVoucher(voucher, expectations), rejectedFor('signer'))
  })

  it('rejects a voucher for another agreement', async () => {
    const voucher = await sign({ agreementId: keccak256(toHex('agreement-2')) })
    await assert.rejects(verifyVoucher(voucher, expectations), rejectedFor('agreementId'))
  })

  it('rejects a voucher for another chain id', async () => {
    const voucher = await sign({ chainId: 1 })
    await assert.rejects(verifyVoucher(voucher, expectations), rejectedFor('chainId'))
  })

  it('rejects a voucher for another escrow contract', async () => {
    const voucher = await sign({ escrowAddress: otherEscrowAddress })
    await assert.rejects(verifyVoucher(voucher, expectations), rejectedFor('escrowAddress'))
  })

  it('rejects a voucher relabelled for this agreement after signing (signature no longer matches)', async () => {
    const voucher = { ...(await sign({ agreementId: keccak256(toHex('agreement-2')) })), agreementId }
    await assert.rejects(verifyVoucher(voucher, expectations), rejectedFor('signer'))
  })

  it('rejects a voucher above the deposit when the deposit is given', async () => {
    const voucher = await sign({ cumulativeWei: 10n ** 18n + 1n })
    await assert.rejects(verifyVoucher(voucher, { ...expectations, maxCumulativeWei: 10n ** 18n }), rejectedFor('amount'))
  })

  it('rejects the high-s twin of a valid signature, which the contract would refuse', async () => {
    const voucher = await sign()
    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    const r = sliceHex(voucher.signature, 0, 32)
    const s = hexToBigInt(sliceHex(voucher.signature, 32, 64))
    const v = Number.parseInt(voucher.signature.slice(130), 16)
    const twin = `${r}${numberToHex(n - s, { size: 32 }).slice(2)}${(v === 27 ? 28 : 27).toString(16)}` as Hex
    await assert.rejects(verifyVoucher({ ...voucher, signature: twin }, expectations), rejectedFor('signature'))
  })

  it('refuses to sign a malformed agreement id or a negative amount', async () => {
    await assert.rejects(sign({ agreementId: '0x1234' }), (e: unknown) => isHearthError(e, 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID'))
    await assert.rejects(sign({ cumulativeWei: -1n }), (e: unknown) => isHearthError(e, 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID'))
  })
})

describe('voucherToJson / voucherFromJson', () => {
  it('round-trips through JSON text with the amount as a decimal string', async () => {
    const voucher = await sign({ cumulativeWei: 2n ** 200n + 7n })
    const json = voucherToJson(voucher)
    assert.equal(json.cumulativeWei, (2n ** 200n + 7n).toString())
    const back = voucherFromJson(JSON.parse(JSON.stringify(json)))
    assert.deepEqual(back, voucher)
    await verifyVoucher(back, expectations)
  })

  it('rejects malformed input, saying what is wrong', async () => {
    const good = voucherToJson(await sign())
    const cases: [unknown, RegExp][] = [
      [null, /not a JSON object/],
      [[good], /not a JSON object/],
      [{ ...good, agreementId: '0x12' }, /agreementId/],
      [{ ...good, cumulativeWei: 5 }, /cumulativeWei/],
      [{ ...good, cumulativeWei: '-5' }, /cumulativeWei/],
      [{ ...good, cumulativeWei: '05' }, /cumulativeWei/],
      [{ ...good, cumulativeWei: '1e18' }, /cumulativeWei/],
      [{ ...good, cumulativeWei: (2n ** 256n).toString() }, /uint256/],
      [{ ...good, chainId: '31337' }, /chainId/],
      [{ ...good, escrowAddress: '0xnope' }, /escrowAddress/],
      [{ ...good, signer: undefined }, /signer/],
      [{ ...good, signature: `${good.signature}00` }, /signature/],
    ]
    for (const [input, message] of cases) {
      assert.throws(
        () => voucherFromJson(input),
        (error: unknown) => isHearthError(error, 'HEARTH_ERR_PAYMENT_VOUCHER_INVALID') && message.test(error.message),
        `expected ${message} for ${JSON.stringify(input)}`,
      )
    }
  })
})
