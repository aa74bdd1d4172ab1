/** The `hearth` command as a person uses it: exit codes, refusals of bad input, and JSON output. */
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { after, test } from 'node:test'
import { Command, Help } from 'commander'
import { invokedCommands, lazyCommands, main } from '../src/cli/main.ts'
import type { DemoReport } from '../src/devnet/demo.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-cli-test-'))
after(() => rm(dir, { recursive: true, force: true }))

async function hearth(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const stdout = new PassThrough()
  const stderr = new PassThrough()
  const chunks = { stdout: [] as Buffer[], stderr: [] as Buffer[] }
  stdout.on('data', (c: Buffer) => chunks.stdout.push(c))
  stderr.on('data', (c: Buffer) => chunks.stderr.push(c))
  const code = await main(argv, { stdout, stderr })
  return { code, stdout: Buffer.concat(chunks.stdout).toString(), stderr: Buffer.concat(chunks.stderr).toString() }
}

test('hearth --help lists the lazily loaded commands exactly as their modules define them', async () => {
  const help = new Help()
  for (const entry of lazyCommands) {
    const program = new Command('hearth')
    ;(await entry.load())(program, { stdout: new PassThrough(), stderr: new PassThrough() })
    const registered = program.commands.map((command) => ({ name: command.name(), term: help.subcommandTerm(command), description: command.description() }))
    assert.deepEqual(registered, entry.commands)
  }
  const { code, stdout } = await hearth('--help')
  assert.equal(code, 0)
  for (const entry of lazyCommands) for (const command of entry.commands) assert.match(stdout, new RegExp(`^  ${command.term.replace(/[[\]]/g, '\\$&')} +\\S`, 'm'))
  assert.equal((await hearth('--version')).stdout, `${(await import('../package.json', { with: { type: 'json' } })).default.version}\n`)
})

test('the commands commander dispatches to are the ones whose modules are loaded', () => {
  const names = (...argv: string[]) => [...invokedCommands(argv)]
  assert.deepEqual(names(), [])
  assert.deepEqual(names('--help'), [])
  assert.deepEqual(names('--version', 'wallet'), [])
  assert.deepEqual(names('wallet', 'send', '--to', 'x'), ['wallet', 'send'])
  assert.deepEqual(names('help', 'chain'), ['help', 'chain'])
  assert.deepEqual(names('--', 'relay', '--json'), ['relay', '--json'])
  assert.deepEqual(names('run', '-', 'x'), ['run', '-'])
})

test('a job file with wrong fields is refused with exit code 2, naming each field, before anything starts', async () => {
  const job = join(dir, 'bad.json')
  await writeFile(job, JSON.stringify({ name: 'x', runtime: 'wasi', package: './p.wasm', tasks: [{ args: [1], outputs: ['out.txt'] }] }))
  const { code, stderr, stdout } = await hearth('run', job)
  assert.equal(code, 2)
  assert.match(stderr, /tasks\[0\]\.args\[0\]: /)
  assert.match(stderr, /tasks\[0\]\.outputs\[0\]: expected an absolute guest path/)
  assert.doesNotMatch(stderr, /starting a local network/)
  assert.equal(stdout, '')
})

test('a job file naming a missing program is refused with exit code 2', async () => {
  const job = join(dir, 'missing.json')
  await writeFile(job, JSON.stringify({ name: 'x', runtime: 'wasi', package: './nowhere.wasm', tasks: [{}] }))
  const { code, stderr } = await hearth('run', job)
  assert.equal(code, 2)
  assert.match(stderr, /package: \.\/nowhere\.wasm/)
})

test('a job file that does not exist, or is not JSON, is refused with exit code 2', async () => {
  assert.equal((await hearth('run', join(dir, 'nope.json'))).code, 2)
  const broken = join(dir, 'broken.json')
  await writeFile(broken, '{ "name": "x", ')
  const { code, stderr } = await hearth('run', broken)
  assert.equal(code, 2)
  assert.match(stderr, /not valid JSON/)
})

test('bad options are refused with exit code 2', async () => {
  const { code, stderr } = await hearth('demo', '--providers', '0')
  assert.equal(code, 2)
  assert.match(stderr, /--providers must be a whole number/)
  assert.equal((await hearth('no-such-command')).code, 2)
})

test('market match prints yes, no or undefined, and a bad filter is refused with its position', async () => {
  const demand = join(dir, 'demand.json')
  const offer = join(dir, 'offer.json')
  await writeFile(demand, JSON.stringify({ properties: { golem: { srv: { comp: { expiration: 1_900_000_000_000 } } } }, constraints: '(&(golem.inf.mem.gib>=4)(golem.runtime.name=wasi))' }))
  await writeFile(offer, JSON.stringify({ properties: { 'golem.inf.mem.gib': 8, 'golem.runtime.name': 'wasi' }, constraints: '(golem.srv.comp.expiration>0)' }))
  assert.deepEqual(await hearth('market', 'match', '--demand', demand, '--offer', offer), { code: 0, stdout: 'yes\n', stderr: '' })
  await writeFile(offer, JSON.stringify({ properties: { 'golem.inf.mem.gib': 2, 'golem.runtime.name': 'wasi' }, constraints: '' }))
  assert.equal((await hearth('market', 'match', '--demand', demand, '--offer', offer)).stdout, 'no\n')
  await writeFile(offer, JSON.stringify({ properties: { 'golem.runtime.name': 'wasi' }, constraints: '' }))
  assert.equal((await hearth('market', 'match', '--demand', demand, '--offer', offer, '--json')).stdout, '{"result":"undefined"}\n')

  await writeFile(demand, JSON.stringify({ properties: {}, constraints: '(&(golem.inf.mem.gib>=4)' }))
  const bad = await hearth('market', 'match', '--demand', demand, '--offer', offer)
  assert.equal(bad.code, 2)
  assert.match(bad.stderr, /offset|position|\^/)
  const badOffers = await hearth('market', 'offers', '--constraints', '(golem.inf.mem.gib>=')
  assert.equal(badOffers.code, 2)
})

test('hearth payments shows, from each node\'s own database, the money path of a demo run', async () => {
  const dataDir = join(dir, 'nodes')
  const demo = await hearth('demo', '--tasks', '4', '--width', '32', '--height', '16', '--out', join(dir, 'demo-out'), '--data-dir', dataDir, '--json')
  assert.equal(demo.code, 0, demo.stderr)
  // The demo's money, read from the chain by its audit.
  const audit = (JSON.parse(demo.stdout) as DemoReport).audit
  assert.deepEqual(audit.problems, [])
  assert.equal(audit.balanced, true)
  const requestor = await hearth('payments', '--data-dir', join(dataDir, 'requestor'), '--json')
  assert.equal(requestor.code, 0, requestor.stderr)
  const report = JSON.parse(requestor.stdout) as { agreements: { id: string; escrow: { depositedWei: string; claimedWei: string; refundedWei: string; closed: boolean }; vouchers: unknown[]; invoice: { amountDueWei: string; paidWei: string } }[] }
  assert.equal(report.agreements.length, 3)
  for (const a of report.agreements) {
    // The requestor's database against the chain: each escrow as recorded is the escrow the chain holds.
    const chain = audit.agreements.find((c) => c.agreementId.toLowerCase() === a.id.toLowerCase())
    assert.ok(chain !== undefined, `agreement ${a.id} is on chain`)
    assert.deepEqual([a.escrow.depositedWei, a.escrow.claimedWei, a.escrow.refundedWei, a.escrow.closed], [chain.depositedWei, chain.paidWei, chain.refundedWei, chain.closed])
    assert.equal(a.invoice.paidWei, a.escrow.claimedWei)
    assert.equal(a.invoice.amountDueWei, a.invoice.paidWei)
  }
  const provider = await hearth('payments', '--data-dir', join(dataDir, 'provider-1'))
  assert.match(provider.stdout, /claimed \d+ wei in 0x[0-9a-f]{64}/)
  assert.equal((await hearth('payments', '--data-dir', join(dir, 'nowhere'))).code, 2)
})
