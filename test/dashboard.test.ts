/**
 * The local APIs and the dashboard, each node its own process on a shared development chain: two `hearth provider
 * start` (regions eu and us, lending disk and hosting services) and `hearth requestor start` joining through them.
 *
 * The API: every command in each node's OpenAPI document is called against the running node, and its answer checked
 * against the document (ajv, JSON Schema 2020-12); a request without the key, with a foreign Host or Origin, and an
 * event socket with a wrong key are refused. The dashboard, in Debian's chromium driven by playwright-core: a job file
 * and its inputs are uploaded from the page, the job followed live to its end, its output checked against the answer
 * computed here, the money page says the agreements balance (and the chain's escrows agree), and the provider's page
 * shows what it earned. Screenshots of every page, at desktop width and 390 px, go to out/screenshots/dashboard/.
 */
import assert from 'node:assert/strict'
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { request as httpRequest } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { Ajv2020 } from 'ajv/dist/2020.js'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { Address, Hex } from 'viem'
import { generatePrivateKey } from 'viem/accounts'
import { WebSocket } from 'ws'
import { buildContracts } from '../scripts/build-contracts.ts'
import { buildWeb } from '../scripts/build-web.ts'
import { devAccountKey, startChain, type RunningChain } from '../src/cli/chain-command.ts'
import { capture, hearth } from '../src/cli/testdata/run-cli.ts'
import { compileAssemblyScript } from '../src/exec/assemblyscript-compiler.ts'
import { createChainClient } from '../src/payment/chain-client.ts'
import { readDeploymentFile } from '../src/payment/deploy.ts'
import { getEscrow } from '../src/payment/escrow.ts'
import { readApiInfo } from '../src/provider/local-api.ts'
import { hearthProcesses } from './support/hearth-process.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './support/wordcount.ts'

const repoRoot = resolve(import.meta.dirname, '..')
const screenshots = join(repoRoot, 'out', 'screenshots', 'dashboard')
const processes = hearthProcesses()

interface Node {
  name: string
  dataDir: string
  url: string
  key: string
  doc: { info: { title: string }; paths: Record<string, { post?: { responses: Record<string, { content?: Record<string, { schema: object }> }> } }> }
  /** Commands called and checked against the document. */
  exercised: Set<string>
}

// Formats are annotations in JSON Schema 2020-12; shapes, types, patterns and enums are what is checked.
const ajv = new Ajv2020({ strict: false, allErrors: true, validateFormats: false })

/** Calls a command, asserts it answered 200, and checks the answer against the node's own OpenAPI document. */
async function call<T>(node: Node, command: string, body?: Record<string, unknown>): Promise<T> {
  const response = await fetch(`${node.url}/v1/${command}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${node.key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const answer = (await response.json()) as { ok: boolean; result: T; error?: { message: string } }
  assert.equal(response.status, 200, `${node.name} ${command}: ${answer.error?.message ?? response.status}`)
  const operation = node.doc.paths[`/v1/${command}`]?.post
  assert.ok(operation !== undefined, `${node.name}'s document has no ${command}`)
  const validate = ajv.compile(operation.responses['200']!.content!['application/json']!.schema)
  assert.ok(validate(answer), `${node.name} ${command} answered outside its document: ${ajv.errorsText(validate.errors)}\n${JSON.stringify(answer).slice(0, 2000)}`)
  node.exercised.add(command)
  return answer.result
}

/** A refused call: its status and error code, checked against the document's error envelope. */
async function refused(node: Node, command: string, body: Record<string, unknown>): Promise<{ status: number; code: string; message: string }> {
  const response = await fetch(`${node.url}/v1/${command}`, { method: 'POST', headers: { authorization: `Bearer ${node.key}`, 'content-type': 'application/json' }, body: JSON.stringify(body) })
  const answer = (await response.json()) as { ok: boolean; error: { code: string; message: string } }
  assert.equal(answer.ok, false)
  return { status: response.status, code: answer.error.code, message: answer.error.message }
}

async function nodeOf(name: string, dataDir: string, url: string): Promise<Node> {
  const key = (await readFile(join(dataDir, 'api.key'), 'utf8')).trim()
  const doc = (await (await fetch(`${url}/openapi.json`)).json()) as Node['doc']
  return { name, dataDir, url, key, doc, exercised: new Set() }
}

/** A raw request with headers fetch would not let a test set (Host). */
function rawRequest(url: string, path: string, headers: Record<string, string>): Promise<number> {
  const { hostname, port } = new URL(url)
  return new Promise((done, fail) => {
    const req = httpRequest({ host: hostname, port: Number(port), path, method: 'POST', headers }, (res) => {
      res.resume()
      done(res.statusCode ?? 0)
    })
    req.on('error', fail)
    req.end()
  })
}

async function shoot(page: Page, name: string): Promise<void> {
  await page.screenshot({ path: join(screenshots, `${name}.png`), fullPage: true })
}

/** Shows `route` at desktop width and at 390 px, with a screenshot of each; nothing may overflow the narrow page. */
async function shootBoth(page: Page, route: string, name: string, ready: string): Promise<void> {
  for (const [width, height, suffix] of [[1280, 800, 'desktop'], [390, 844, 'phone']] as const) {
    await page.setViewportSize({ width, height })
    await page.evaluate((hash) => (location.hash = hash), route)
    await page.locator(ready).first().waitFor({ timeout: 60_000 })
    if (width === 390) {
      const overflow = await page.evaluate(() => document.documentElement.scrollWidth)
      assert.ok(overflow <= 390, `${name} overflows a 390 px screen: ${overflow} px wide`)
    }
    await shoot(page, `${name}-${suffix}`)
  }
}

describe('the local APIs and the dashboard, each node its own process', { timeout: 900_000 }, () => {
  let dir: string
  let chain: RunningChain
  let deploymentFile: string
  let requestor: Node
  const providers: Node[] = []
  let browser: Browser
  let wasm: Uint8Array
  let jobId: string

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-dashboard-'))
    await rm(screenshots, { recursive: true, force: true })
    await mkdir(screenshots, { recursive: true })
    await Promise.all([buildContracts(), buildWeb()])
    deploymentFile = join(dir, 'deployment.json')
    chain = await startChain({ port: 0, accounts: 4, deploymentOut: deploymentFile }, capture().io)
    const bootstrap: string[] = []
    for (const [index, region] of [[1, 'eu'], [2, 'us']] as const) {
      const dataDir = join(dir, `provider-${index}`)
      await mkdir(dataDir, { recursive: true, mode: 0o700 })
      await writeFile(join(dataDir, 'node.key'), `${devAccountKey(index)}\n`, { mode: 0o600 })
      await chmod(join(dataDir, 'node.key'), 0o600)
      const started = await processes.start([
        'provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deploymentFile,
        '--threads', '1', '--memory-gib', '1', '--disk-gib', '2', '--region', region, '--lat', region === 'eu' ? '52.2' : '40.7', '--lon', region === 'eu' ? '21.0' : '-74.0',
        '--storage', '--storage-gib', '1', '--storage-price', '1', '--services',
      ])
      bootstrap.push((started.ready['multiaddrs'] as string[])[0]!)
      providers.push(await nodeOf(`provider-${index}`, dataDir, (await readApiInfo(dataDir))!.url))
    }
    const funderKeyFile = join(dir, 'funder.key')
    await writeFile(funderKeyFile, `${devAccountKey(0)}\n`, { mode: 0o600 })
    await chmod(funderKeyFile, 0o600)
    const requestorDir = join(dir, 'requestor')
    const node = await processes.start(['requestor', 'start', '--data-dir', requestorDir, '--deployment', deploymentFile, '--funder-key-file', funderKeyFile, '--bootstrap', ...bootstrap, '--storage-code', '1+1'])
    requestor = await nodeOf('requestor', requestorDir, node.ready['api'] as string)
    for (let i = 0; (await call<{ offers: number }>(requestor, 'status')).offers < 2; i++) {
      assert.ok(i < 300, 'the providers\' offers did not reach the requestor node')
      await new Promise((done) => setTimeout(done, 200))
    }
    const source = await readFile(join(repoRoot, 'src/exec/testdata/cgi-handler.asc'), 'utf8')
    wasm = await compileAssemblyScript({ files: { 'handler.ts': source }, entry: 'handler.ts', optimize: false })
    browser = await chromium.launch({
      executablePath: '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run'],
    })
  })

  after(async () => {
    await browser?.close()
    processes.killAll()
    await chain?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('refuses a request without the key, with a foreign Host or Origin, and an event socket with a wrong key', async () => {
    for (const node of [requestor, providers[0]!]) {
      const port = new URL(node.url).port
      assert.equal(await rawRequest(node.url, '/v1/status', {}), 401)
      assert.equal(await rawRequest(node.url, '/v1/status', { authorization: `Bearer ${'0'.repeat(64)}` }), 401)
      assert.equal(await rawRequest(node.url, '/v1/status', { authorization: `Bearer ${node.key}`, host: `attacker.example:${port}` }), 403)
      assert.equal(await rawRequest(node.url, '/v1/status', { authorization: `Bearer ${node.key}`, origin: 'http://attacker.example' }), 403)
      assert.equal(await rawRequest(node.url, '/v1/status', { authorization: `Bearer ${node.key}` }), 200)
      const metrics = await fetch(`${node.url}/metrics`)
      assert.equal(metrics.status, 401)
      const text = await (await fetch(`${node.url}/metrics`, { headers: { authorization: `Bearer ${node.key}` } })).text()
      assert.match(text, /^# HELP hearth_/m)
      // The event socket: a wrong key is closed with 4401; the right one is answered ready; a foreign Origin never opens.
      const wrong = new WebSocket(`${node.url.replace('http', 'ws')}/v1/events`)
      wrong.on('open', () => wrong.send(JSON.stringify({ type: 'auth', key: 'f'.repeat(64) })))
      assert.equal(await new Promise((done) => wrong.on('close', (code) => done(code))), 4401)
      const right = new WebSocket(`${node.url.replace('http', 'ws')}/v1/events`)
      right.on('open', () => right.send(JSON.stringify({ type: 'auth', key: node.key })))
      assert.deepEqual(await new Promise((done) => right.once('message', (data) => done(JSON.parse(String(data))))), { type: 'ready' })
      right.close()
      const foreign = new WebSocket(`${node.url.replace('http', 'ws')}/v1/events`, { origin: 'http://attacker.example' })
      assert.match(await new Promise<string>((done) => foreign.on('error', (error) => done(error.message))), /403/)
    }
  })

  it('answers the market, money, storage and service commands as its OpenAPI document says', async () => {
    assert.equal(requestor.doc.info.title, 'Hearth requestor node local API')
    await call(requestor, 'payments')
    const all = await call<{ total: number; offers: { region: string | null }[] }>(requestor, 'offers', {})
    assert.ok(all.total >= 2)
    const eu = await call<{ offers: { region: string | null }[] }>(requestor, 'offers', { filter: '(hearth.geo.region=eu)' })
    assert.deepEqual(eu.offers.map((o) => o.region), ['eu'])
    // An empty filter is refused, as yagna refuses one; so is one that does not parse.
    assert.deepEqual((({ status, code }) => ({ status, code }))(await refused(requestor, 'offers', { filter: '' })), { status: 400, code: 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID' })
    assert.equal((await refused(requestor, 'offers', { filter: '(golem.inf.cpu.threads>=' })).status, 400)
    const map = await call<{ providers: { region: string | null; latencyMs: number | null }[] }>(requestor, 'providers')
    assert.deepEqual(map.providers.map((p) => p.region).sort(), ['eu', 'us'])
    assert.ok(map.providers.every((p) => p.latencyMs !== null && p.latencyMs >= 0), 'each provider\'s round trip is measured')

    const file = join(dir, 'notes.txt')
    await writeFile(file, 'dashboard notes\n'.repeat(100))
    await call(requestor, 'store-put', { bucket: 'notes', key: 'a.txt', path: file })
    await call(requestor, 'store-ls', {})
    await call(requestor, 'store-ls', { bucket: 'notes' })
    await call(requestor, 'store-status', {})
    await call(requestor, 'store-get', { bucket: 'notes', key: 'a.txt', path: join(dir, 'back.txt') })
    assert.equal(await readFile(join(dir, 'back.txt'), 'utf8'), await readFile(file, 'utf8'))
    await call(requestor, 'store-s3', {})
    await call(requestor, 'store-repair', {})
    await call(requestor, 'store-restore', {})

    const packagePath = join(dir, 'handler.wasm')
    await writeFile(packagePath, wasm)
    const spec = { name: 'greeter', runtime: 'wasi', replicas: { total: 1 }, health: { path: '/hello?name=health', intervalMs: 1000, timeoutMs: 5000, failuresBeforeDown: 3 } }
    const deployed = await call<{ replicas: unknown[] }>(requestor, 'service-deploy', { spec, packagePath })
    assert.equal(deployed.replicas.length, 1)
    await call(requestor, 'service-ls')
    await call(requestor, 'service-status', { name: 'greeter' })
    await call(requestor, 'service-logs', { name: 'greeter' })
    await call(requestor, 'service-scale', { name: 'greeter', replicas: { total: 1 } })
    await call(requestor, 'service-update', { name: 'greeter', spec, packagePath })
    await call(requestor, 'money')
    // The object and the service stay for the dashboard's pages; the last test removes them.
  })

  it('runs a job submitted from the page to its end, shows its money balanced, and the provider\'s earnings', async () => {
    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    const problems: string[] = []
    page.on('pageerror', (error) => problems.push(error.message))
    // The page's own errors; the refusal of the bad filter tried below is expected, and shown on the page instead.
    page.on('console', (message) => message.type() === 'error' && !message.location().url.endsWith('/v1/offers') && problems.push(`${message.text()} (${message.location().url})`))
    // As a user opens it: `hearth ui` gives the page with the key in the fragment, which no request line carries.
    const ui = await hearth(['ui', '--data-dir', requestor.dataDir, '--no-open', '--json'])
    assert.equal(ui.code, 0, ui.stderr)
    const { url } = JSON.parse(ui.stdout) as { url: string }
    assert.equal(url, `${requestor.url}/#key=${requestor.key}`)
    await page.goto(url)
    await page.locator('[data-testid=provider-marker]').nth(1).waitFor({ timeout: 60_000 })
    assert.ok(!page.url().includes(requestor.key), 'the key leaves the address bar')

    // A job folder as a user has it: the job file, its package and its inputs, uploaded from the page.
    const jobDir = join(dir, 'upload')
    await mkdir(jobDir, { recursive: true })
    const job = JSON.parse(await readFile(join(wordcountExample, 'job.json'), 'utf8')) as Record<string, unknown>
    await writeFile(join(jobDir, 'job.json'), JSON.stringify({ ...job, package: 'wordcount.wasm', providers: 2 }))
    await copyFile(join(repoRoot, 'build/workloads/wordcount.wasm'), join(jobDir, 'wordcount.wasm'))
    const texts = ['hearth.txt', 'market.txt', 'sandbox.txt']
    for (const name of texts) await copyFile(join(wordcountExample, name), join(jobDir, name))
    await page.evaluate(() => (location.hash = '#/jobs'))
    await page.setInputFiles('#job-file', join(jobDir, 'job.json'))
    await page.setInputFiles('#job-inputs', [join(jobDir, 'wordcount.wasm'), ...texts.map((name) => join(jobDir, name))])
    await page.click('#submit-job')
    await page.waitForURL(/#\/jobs\/[^/]+$/, { timeout: 60_000 })
    jobId = decodeURIComponent(page.url().split('#/jobs/')[1]!)
    await page.locator('[data-testid=job-state]', { hasText: 'finished' }).waitFor({ timeout: 300_000 })
    // Its report: the settlement audit read from the chain once every agreement was settled.
    const audit = page.locator('[data-testid=job-audit]')
    await audit.waitFor({ timeout: 60_000 })
    assert.equal(await audit.getAttribute('data-balanced'), 'true')
    await shoot(page, 'job-finished-desktop')

    // The result is the word count itself, computed here; the job's commands answer as documented.
    const detail = await call<{ state: string; progress: { done: number; total: number }; report: { settlement: { audit: { balanced: boolean } } } }>(requestor, 'job', { id: jobId })
    assert.equal(detail.state, 'finished')
    assert.equal(detail.progress.done, detail.progress.total)
    assert.ok(detail.report.settlement.audit.balanced, 'the job\'s escrows balance on chain')
    await call(requestor, 'jobs')
    const files = await call<{ files: { path: string }[] }>(requestor, 'job-outputs', { id: jobId })
    const counts = files.files.find((f) => f.path.endsWith('counts.tsv'))
    assert.ok(counts !== undefined, `no counts.tsv among ${files.files.map((f) => f.path).join(', ')}`)
    const output = await call<{ base64: string }>(requestor, 'job-output', { id: jobId, path: counts.path })
    assert.equal(Buffer.from(output.base64, 'base64').toString('utf8'), referenceCounts(...(await wordcountTexts())))

    // The money page: every agreement balanced, as the chain's escrows say on their own.
    await page.evaluate(() => (location.hash = '#/money'))
    const balanced = page.locator('[data-testid=money-balanced]')
    await balanced.waitFor({ timeout: 60_000 })
    assert.equal(await balanced.getAttribute('data-balanced'), 'true')
    const money = await call<{ requestor: Address; agreements: { agreementId: string; chain: { depositedWei: string; paidWei: string; closed: boolean } | null }[] }>(requestor, 'money')
    const deployment = await readDeploymentFile(deploymentFile)
    const reader = { client: createChainClient({ transport: deployment.rpcUrl!, privateKey: generatePrivateKey(), chainId: deployment.chainId }), tokenAddress: deployment.tokenAddress, escrowAddress: deployment.escrowAddress }
    const jobAgreements = money.agreements.filter((a) => a.chain !== null)
    assert.ok(jobAgreements.length >= 2)
    for (const agreement of jobAgreements) {
      const escrow = await getEscrow(reader, { requestorAddress: money.requestor, agreementId: agreement.agreementId as Hex })
      assert.equal(escrow?.depositedWei.toString(), agreement.chain!.depositedWei)
      assert.equal(escrow?.claimedWei.toString(), agreement.chain!.paidWei)
    }

    // Every page of the requestor node, at both widths.
    await shootBoth(page, '#/', 'requestor-map', '[data-testid=provider-marker]')
    await shootBoth(page, '#/market', 'requestor-market', '[data-testid=offer-row]')
    await shootBoth(page, '#/jobs', 'requestor-jobs', '#job-file')
    await shootBoth(page, `#/jobs/${encodeURIComponent(jobId)}`, 'requestor-job', '[data-testid=job-state]')
    await shootBoth(page, '#/money', 'requestor-money', '[data-testid=money-balanced]')
    await shootBoth(page, '#/services', 'requestor-services', '[data-testid=replica-row]')
    await shootBoth(page, '#/storage', 'requestor-storage', '[data-testid=storage-object]')
    // A bad filter typed in the market page is shown with what to do, not thrown away.
    await page.evaluate(() => (location.hash = '#/market'))
    await page.fill('#offer-filter', '(golem.inf.cpu.threads>=')
    await page.keyboard.press('Enter')
    await page.locator('[role=alert]').first().waitFor({ timeout: 30_000 })
    await page.close()

    // The providers' pages: what each earned, as its own API says, and the earnings shown.
    const earned = await Promise.all(providers.map((p) => call<{ totals: { revenueWei: string } }>(p, 'earnings')))
    const paid = providers.filter((_p, i) => BigInt(earned[i]!.totals.revenueWei) > 0n)
    assert.ok(paid.length >= 1, 'a provider earned from the job')
    const provider = paid[0]!
    const providerPage = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    providerPage.on('pageerror', (error) => problems.push(error.message))
    providerPage.on('console', (message) => message.type() === 'error' && problems.push(`${message.text()} (${message.location().url})`))
    const providerUi = await hearth(['ui', '--provider', '--data-dir', provider.dataDir, '--no-open', '--json'])
    assert.equal(providerUi.code, 0, providerUi.stderr)
    await providerPage.goto((JSON.parse(providerUi.stdout) as { url: string }).url)
    await providerPage.locator('[data-testid=lending-state]').waitFor({ timeout: 60_000 })
    await providerPage.evaluate(() => (location.hash = '#/earnings'))
    const revenue = providerPage.locator('[data-testid=earnings-revenue]')
    await revenue.waitFor({ timeout: 60_000 })
    // Storage holdings are paid by time, so revenue grows while the page loads: it shows a figure between the API's
    // before and after.
    const shown = BigInt((await revenue.getAttribute('data-wei')) ?? '-1')
    const later = BigInt((await call<{ totals: { revenueWei: string } }>(provider, 'earnings')).totals.revenueWei)
    assert.ok(BigInt(earned[providers.indexOf(provider)]!.totals.revenueWei) <= shown && shown <= later, `the page shows ${shown} wei`)
    await shootBoth(providerPage, '#/', 'provider-status', '[data-testid=lending-state]')
    await shootBoth(providerPage, '#/earnings', 'provider-earnings', '[data-testid=earnings-revenue]')
    await shootBoth(providerPage, '#/profitability', 'provider-profitability', 'main h1')
    await shootBoth(providerPage, '#/config', 'provider-config', 'main h1')
    await providerPage.close()
    assert.deepEqual(problems, [], 'the pages ran without errors')
  })

  it('answers the provider commands as its OpenAPI document says, removes what it stored and deployed, and a cancelled job stops', async () => {
    await call(requestor, 'store-rm', { bucket: 'notes', key: 'a.txt' })
    const paid = await call<{ agreementId: string }[]>(requestor, 'service-rm', { name: 'greeter' })
    assert.ok(paid.length >= 1, 'removing the service settles its agreement')
    for (const provider of providers) {
      assert.equal(provider.doc.info.title, 'Hearth provider local API')
      await call(provider, 'status')
      await call(provider, 'earnings')
      // The history's last point is the revenue (read between two looks at it: storage is paid as time passes).
      const lastOf = async (): Promise<bigint> => BigInt((await call<{ points: { revenueWei: string }[] }>(provider, 'earnings-history')).points.at(-1)?.revenueWei ?? '0')
      const before = await lastOf()
      const earned = BigInt((await call<{ totals: { revenueWei: string } }>(provider, 'earnings')).totals.revenueWei)
      const after = await lastOf()
      assert.ok(before <= earned && earned <= after, `the history ends at the revenue: ${before} <= ${earned} <= ${after}`)
      await call(provider, 'config')
      await call(provider, 'payments')
      const paused = await call<{ lending: { active: boolean } }>(provider, 'pause')
      assert.equal(paused.lending.active, false)
      const resumed = await call<{ lending: { active: boolean } }>(provider, 'resume')
      assert.equal(resumed.lending.active, true)
    }
    const jobDir = join(dir, 'upload')
    const files = await Promise.all(['wordcount.wasm', 'hearth.txt', 'market.txt', 'sandbox.txt'].map(async (path) => ({ path, base64: (await readFile(join(jobDir, path))).toString('base64') })))
    const jobFile = JSON.parse(await readFile(join(jobDir, 'job.json'), 'utf8')) as Record<string, unknown>
    // A job file that does not check is refused in the answer, before anything starts.
    assert.equal((await refused(requestor, 'job-submit', { jobFile: { ...jobFile, kind: 'nonsense' }, files })).status, 400)
    assert.equal((await refused(requestor, 'job-submit', { jobFile, files: [{ path: '../escape.txt', base64: '' }] })).status, 400)
    // A job file that names the node's own key as its package would send it to a provider: refused.
    const stealsKey = await refused(requestor, 'job-submit', { jobFile: { ...jobFile, package: '../../node.key' }, files })
    assert.deepEqual([stealsKey.status, stealsKey.code], [400, 'HEARTH_ERR_JOB_INVALID'])
    assert.match(stealsKey.message, /outside the job's folder/)
    const submitted = await call<{ id: string }>(requestor, 'job-submit', { jobFile, files })
    await call(requestor, 'job-cancel', { id: submitted.id })
    for (let i = 0; ; i++) {
      const state = (await call<{ state: string }>(requestor, 'job', { id: submitted.id })).state
      if (state === 'cancelled') break
      assert.ok(i < 600 && state !== 'finished', `the cancelled job is ${state}`)
      await new Promise((done) => setTimeout(done, 200))
    }
  })

  it('has exercised every command of both documents, and stops each node through its API', async () => {
    await call(requestor, 'stop')
    await call(providers[1]!, 'stop')
    // The two providers serve the same document: what either was asked counts for it.
    const providerCalls = new Set(providers.flatMap((p) => [...p.exercised]))
    for (const [node, exercised] of [[requestor, requestor.exercised], [providers[0]!, providerCalls]] as const) {
      const documented = Object.keys(node.doc.paths).filter((path) => node.doc.paths[path]!.post !== undefined).map((path) => path.slice('/v1/'.length))
      assert.ok(documented.length > 5)
      assert.deepEqual(documented.filter((c) => !exercised.has(c)), [], `${node.name}: commands no test called`)
    }
  })
})
