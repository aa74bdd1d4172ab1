/**
 * The money commands through the real CLI, on a development chain served as `hearth chain` serves it, with real keys
 * and contracts: a provider node (as `hearth provider start` runs it) whose claims fail while it has no gas shows the
 * failure, its error and its next try in `hearth provider status` and `earnings`; once it has gas again the retry
 * lands, waits for its confirmations (not counted as claimed until then) and is counted once confirmed. A requestor
 * whose provider never claimed takes its deposit back with `hearth payments refund`, which says when that becomes
 * possible (expiry plus the escrow's claim grace, by chain time) and refunds once the chain has travelled past it.
 */
import assert from 'node:assert/strict'
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { numberToHex, parseEther, type Hex } from 'viem'
import { buildContracts } from '../../scripts/build-contracts.ts'
import { loadBuiltinWorkload } from '../exec/workloads.ts'
import { renderJob } from '../jobs/render-job.ts'
import { createChainClient } from '../payment/chain-client.ts'
import { chainTimeSec, getEscrow, tokenBalanceOf, type EscrowContext } from '../payment/escrow.ts'
import { resolveProviderConfig } from '../provider/config.ts'
import type { EarningsReport } from '../provider/earnings.ts'
import { startProviderNode, type ProviderNode, type ProviderStatus } from '../provider/provider-node.ts'
import { startRequestorNode, type RequestorNode } from '../requestor/requestor-node.ts'
import { devAccountKey, startChain, type RunningChain } from './chain-command.ts'
import type { RefundReport } from './payments-command.ts'
import { capture, hearth } from './testdata/run-cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-payments-cli-'))
after(() => rm(dir, { recursive: true, force: true }))
const deploymentFile = join(dir, 'deployment.json')
const providerDir = join(dir, 'provider')
const requestorDir = join(dir, 'requestor')


async function json<T>(args: string[]): Promise<T> {
  const result = await hearth([...args, '--json'])
  assert.equal(result.code, 0, result.stderr)
  return JSON.parse(result.stdout) as T
}

let chain: RunningChain
let provider: ProviderNode
let requestor: RequestorNode
/** Account 0 of the chain, for reading balances and escrows from the chain itself. */
let reader: EscrowContext

async function rpc(method: string, params: unknown[] = []): Promise<unknown> {
  const response = await fetch(chain.url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ jsonrpc: '2.0', id: 1, method, params }) })
  const reply = (await response.json()) as { result?: unknown; error?: { message: string } }
  if (reply.error !== undefined) throw new Error(`${method}: ${reply.error.message}`)
  return reply.result
}

/** The provider's gas: none makes every claim it sends fail; some makes them land. */
const setProviderGas = (wei: bigint): Promise<unknown> => rpc('hardhat_setBalance', [provider.address, numberToHex(wei)])

before(async () => {
  await buildContracts()
  chain = await startChain({ port: 0, accounts: 2, deploymentOut: deploymentFile }, capture().io)
  const client = createChainClient({ transport: chain.url, privateKey: chain.accounts[0]!.privateKey, chainId: chain.chainId })
  reader = { client, tokenAddress: chain.deployment.tokenAddress, escrowAddress: chain.deployment.escrowAddress }

  // The provider: dev account 1 is its node key; a claim counts once it is 2 blocks deep.
  await mkdir(providerDir, { recursive: true, mode: 0o700 })
  await writeFile(join(providerDir, 'node.key'), `${devAccountKey(1)}\n`, { mode: 0o600 })
  await chmod(join(providerDir, 'node.key'), 0o600)
  const config = resolveProviderConfig({
    file: {
      listen: ['/ip4/127.0.0.1/tcp/0'],
      chain: { deployment: deploymentFile },
      resources: { threads: 1, memoryGib: 1, diskGib: 1 },
      pricing: { model: 'per-task', perTaskHtt: '0.001' },
      payments: { confirmations: 2 },
      idle: { enabled: false },
    },
  })
  provider = await startProviderNode({ dataDir: providerDir, config, machine: { threads: 8, memoryGib: 16, freeDiskGib: 100 } })

  // The requestor, as `hearth run --bootstrap … --data-dir` runs it; dev account 0 pays its gas and faucet tokens.
  requestor = await startRequestorNode({
    dataDir: requestorDir,
    bootstrap: [provider.multiaddrs()[0]!],
    rpcUrl: chain.url,
    deployment: chain.deployment,
    fund: { funderKey: devAccountKey(0), gasWei: parseEther('1'), tokensWei: parseEther('10') },
  })
  await requestor.requestor.market.syncFrom(provider.multiaddrs()[0]!)
  await requestor.requestor.market.offerBook.waitFor(1, (offer) => offer.provider.toLowerCase() === provider.address.toLowerCase(), { signal: AbortSignal.timeout(10_000) })
})
after(async () => {
  await requestor?.stop()
  await provider?.stop()
  await chain?.close()
})

/** A two-tile render on the provider, paid by vouchers; the provider's claim at the end fails when it has no gas. */
async function runJobWithoutProviderGas(): Promise<{ agreementId: Hex; signedWei: bigint; depositWei: bigint }> {
  await setProviderGas(0n)
  const { spec } = renderJob({ width: 16, height: 8, tiles: 2, wasm: await loadBuiltinWorkload('render'), providers: 1, maxPricePerTaskWei: parseEther('0.01') })
  const outcome = await requestor.requestor.runJob({ ...spec, debitNoteIntervalSec: 0, timeoutMs: 120_000 })
  assert.equal(outcome.results.filter((r) => r !== undefined).length, 2, JSON.stringify(outcome.failures))
  const agreement = outcome.agreements.find((a) => a.provider.toLowerCase() === provider.address.toLowerCase())!
  assert.ok(agreement.signedWei > 0n)
  assert.equal(agreement.paidWei, 0n, 'a provider without gas cannot have claimed')
  return { agreementId: agreement.agreementId, signedWei: agreement.signedWei, depositWei: agreement.depositWei }
}

const statusOf = async (): Promise<ProviderStatus> => json<ProviderStatus>(['provider', 'status', '--data-dir', providerDir])
const earningsOf = async (): Promise<EarningsReport> => json<EarningsReport>(['provider', 'earnings', '--data-dir', providerDir])

test('a failed claim is shown with its error and next try; the retry lands, waits for confirmations, then counts as claimed', async () => {
  const job = await runJobWithoutProviderGas()

  // The failure, in status (the running provider's accounts) and in earnings (its database), text and JSON.
  const failing = await statusOf()
  const shown = failing.agreements.find((a) => a.agreementId === job.agreementId)!
  assert.equal(shown.claim?.state, 'failed')
  assert.equal(shown.claim?.release, true)
  assert.equal(shown.claim?.cumulativeWei, job.signedWei.toString())
  assert.ok((shown.claim?.attempts ?? 0) >= 1)
  // The chain refuses the transaction of an account with no gas (how it words that is the node's business).
  assert.match(shown.claim?.lastError ?? '', /^escrow\.claim\+release failed: ./)
  assert.equal(shown.claim?.final, false)
  assert.ok((shown.claim?.nextAttemptAtMs ?? 0) > 0)
  assert.equal(shown.claimedWei, '0')
  assert.equal(shown.unclaimedWei, job.signedWei.toString())
  // The vouchers cover every task delivered: nothing is at risk.
  assert.deepEqual(shown.exposure, { unpaidWei: '0', unpaidTasks: 0, runningTasks: 0 })
  assert.equal(failing.earnings.failedClaims, 1)
  const statusText = await hearth(['provider', 'status', '--data-dir', providerDir])
  assert.equal(statusText.code, 0, statusText.stderr)
  assert.match(statusText.stdout, /claims {6}1 FAILED/)
  assert.match(statusText.stdout, /claim of 0\.002 HTT \(and release\) FAILED \(\d+ attempts?\): escrow\.claim\+release failed: .*; next try (in \d+ s|at the next payment round)/)
  assert.match(statusText.stdout, /unpaid exposure 0 HTT \(0 tasks\)/)

  const offline = await earningsOf()
  const row = offline.agreements.find((a) => a.agreementId === job.agreementId)!
  assert.equal(row.claim?.state, 'failed')
  assert.equal(row.claim?.lastError, shown.claim?.lastError)
  assert.equal(offline.totals.claimedWei, '0')
  assert.equal(offline.totals.failedClaims, 1)
  const earningsText = await hearth(['provider', 'earnings', '--data-dir', providerDir])
  assert.match(earningsText.stdout, /FAILED \(\d+ attempts?\)/)

  // The cause goes away; at its next try (the time status gave) the payment round sends the claim again.
  await setProviderGas(parseEther('10'))
  const balanceBefore = await tokenBalanceOf(reader, provider.address)
  const latest = (await statusOf()).agreements.find((a) => a.agreementId === job.agreementId)!.claim!
  if (latest.state === 'failed' && latest.nextAttemptAtMs !== null) {
    while (Date.now() < latest.nextAttemptAtMs) await new Promise((resolve) => setTimeout(resolve, latest.nextAttemptAtMs! - Date.now()))
  }
  await provider.agent.accounts.tick()

  // On chain, one block deep of the two the provider asks for: shown as waiting, not counted as claimed.
  const sent = await statusOf()
  const inFlight = sent.agreements.find((a) => a.agreementId === job.agreementId)!
  assert.equal(inFlight.claim?.state, 'sent', JSON.stringify(inFlight.claim))
  assert.match(inFlight.claim?.txHash ?? '', /^0x[0-9a-f]{64}$/)
  assert.equal(inFlight.claimedWei, '0')
  assert.equal(inFlight.confirmingWei, job.signedWei.toString())
  assert.equal(sent.earnings.confirmingClaims, 1)
  assert.equal(sent.earnings.failedClaims, 0)
  assert.match((await hearth(['provider', 'status', '--data-dir', providerDir])).stdout, /sent in 0x[0-9a-f]{64} \(block \d+\), waiting for confirmations; not counted as claimed yet/)
  const confirmingEarnings = await earningsOf()
  assert.equal(confirmingEarnings.totals.claimedWei, '0')
  assert.equal(confirmingEarnings.totals.confirmingWei, job.signedWei.toString())
  // The tokens are the provider's already (the chain says so); the report waits for the depth it was told to.
  assert.equal(await tokenBalanceOf(reader, provider.address), balanceBefore + job.signedWei)

  // One more block: confirmed, and counted.
  await rpc('evm_mine')
  await provider.agent.accounts.tick()
  const confirmed = await earningsOf()
  const paid = confirmed.agreements.find((a) => a.agreementId === job.agreementId)!
  assert.equal(paid.claim?.state, 'confirmed')
  assert.equal(paid.claimedWei, job.signedWei.toString())
  assert.equal(paid.confirmingWei, '0')
  assert.equal(paid.unclaimedWei, '0')
  assert.equal(confirmed.totals.claimedWei, job.signedWei.toString())
  const escrow = await getEscrow(reader, { requestorAddress: requestor.identity.address, agreementId: job.agreementId })
  assert.equal(escrow?.claimedWei, job.signedWei)
  assert.equal(escrow?.closed, true)
})

test('hearth payments refund: says when an escrow becomes refundable, and refunds it once chain time is past expiry plus the grace', async () => {
  const job = await runJobWithoutProviderGas()
  // The requestor is done; its store is the command's alone from here.
  await requestor.stop()
  const refundArgs = ['payments', 'refund', '--data-dir', requestorDir, '--deployment', deploymentFile]

  // Too early: nothing is sent, and the report says from when.
  const early = await json<RefundReport>(refundArgs)
  const escrow = (await getEscrow(reader, { requestorAddress: requestor.identity.address, agreementId: job.agreementId }))!
  assert.equal(escrow.closed, false)
  assert.deepEqual(early.refunded, [])
  assert.equal(early.requestor, requestor.identity.address)
  assert.deepEqual(early.waiting.map((w) => w.agreementId), [job.agreementId])
  assert.equal(early.nextRefundableAtSec, escrow.refundableAtSec.toString())
  assert.ok(BigInt(early.chainTimeSec) < escrow.refundableAtSec)
  const earlyText = await hearth(refundArgs)
  assert.equal(earlyText.code, 0, earlyText.stderr)
  assert.match(earlyText.stdout, /Nothing refunded/)
  assert.match(earlyText.stdout, new RegExp(`1 escrow is still open; the next becomes refundable at chain time ${escrow.refundableAtSec} \\(in (1 d|23 h|\\d+ h)`))

  // The chain travels past expiry plus the claim grace.
  const nowSec = await chainTimeSec(reader)
  await rpc('evm_increaseTime', [Number(escrow.refundableAtSec - nowSec) + 1])
  await rpc('evm_mine')
  const balanceBefore = await tokenBalanceOf(reader, requestor.identity.address)
  const refunded = await json<RefundReport>(refundArgs)
  assert.equal(refunded.refunded.length, 1)
  assert.equal(refunded.refunded[0]!.agreementId, job.agreementId)
  assert.equal(refunded.refunded[0]!.provider?.toLowerCase(), provider.address.toLowerCase())
  // The provider never claimed: the whole deposit comes back.
  assert.equal(refunded.refunded[0]!.refundedWei, job.depositWei.toString())
  assert.equal(refunded.refundedWei, job.depositWei.toString())
  assert.deepEqual(refunded.waiting, [])
  assert.equal(refunded.nextRefundableAtSec, null)
  assert.equal(await tokenBalanceOf(reader, requestor.identity.address), balanceBefore + job.depositWei)
  assert.equal((await getEscrow(reader, { requestorAddress: requestor.identity.address, agreementId: job.agreementId }))?.closed, true)
  const again = await hearth(refundArgs)
  assert.equal(again.code, 0, again.stderr)
  assert.match(again.stdout, /Nothing refunded .*\nNo escrow of this requestor is still open/)
  // `hearth payments` shows the escrow closed, the deposit refunded.
  const payments = await json<{ agreements: { id: string; escrow: { refundedWei: string; closed: boolean } | null }[] }>(['payments', '--data-dir', requestorDir])
  const kept = payments.agreements.find((a) => a.id === job.agreementId)?.escrow
  assert.deepEqual([kept?.refundedWei, kept?.closed], [job.depositWei.toString(), true])

  // The provider's claim can never land now: shown as final, with why.
  await provider.agent.claimOutstanding()
  const lost = (await statusOf()).agreements.find((a) => a.agreementId === job.agreementId)!
  assert.equal(lost.claim?.state, 'failed')
  assert.equal(lost.claim?.final, true)
  assert.equal(lost.claim?.nextAttemptAtMs, null)
  assert.match(lost.claim?.lastError ?? '', /the escrow was closed before this claim/)
  assert.match((await hearth(['provider', 'earnings', '--data-dir', providerDir])).stdout, /FAILED .*the escrow was closed before this claim.*; will not be tried again/)
})

test('hearth payments refund refuses a folder without a node database, and a missing --deployment, with exit 2', async () => {
  const noDb = await hearth(['payments', 'refund', '--data-dir', join(dir, 'nothing-here'), '--deployment', deploymentFile])
  assert.equal(noDb.code, 2)
  assert.match(noDb.stderr, /no node database at/)
  const noDeployment = await hearth(['payments', 'refund', '--data-dir', requestorDir])
  assert.equal(noDeployment.code, 2)
  assert.match(noDeployment.stderr, /refunding needs --deployment FILE/)
  const noDir = await hearth(['payments', 'refund', '--deployment', deploymentFile])
  assert.equal(noDir.code, 2)
})

