/**
 * Hearth nodes as OS processes on testbed hosts (src/testbed): the chain, relays, providers and requestors each in
 * their own network namespace, started with the `hearth` command exactly as an owner would start them.
 */
import assert from 'node:assert/strict'
import type { ChildProcess } from 'node:child_process'
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after } from 'node:test'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import type { RunReport } from '../../src/cli/run-job.ts'
import { keyFileName } from '../../src/identity/node-identity.ts'
import type { ProviderStatus } from '../../src/provider/provider-node.ts'
import { build, type Testbed, type TestbedSpec } from '../../src/testbed/testbed.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './wordcount.ts'

export const hearthBin = fileURLToPath(new URL('../../bin/hearth.js', import.meta.url))

export interface Started<T> {
  ready: T
  child: ChildProcess
  /** Every stdout line so far, parsed (the ready line first). */
  lines: unknown[]
  /** Its stderr so far (its log). */
  stderr(): string
}

/** Runs `hearth` commands on a testbed's hosts; `stopAll` kills whatever is still running. */
export function testbedNodes(testbed: Testbed, dir: string) {
  const children: ChildProcess[] = []

  /** Starts `hearth ARGS` on a host and resolves once it prints its first stdout line (the ready line). */
  async function start<T>(host: string, args: string[]): Promise<Started<T>> {
    const child = testbed.exec(host, process.execPath, [hearthBin, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
    children.push(child)
    let stderr = ''
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
    const lines: unknown[] = []
    return new Promise<Started<T>>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        lines.push(JSON.parse(line))
        if (lines.length === 1) resolve({ ready: lines[0] as T, child, lines, stderr: () => stderr })
      })
      child.once('exit', (code) => reject(new Error(`hearth ${args[0]} on ${host} exited with ${code}:\n${stderr}`)))
    })
  }

  /**
   * `hearth chain` on `host`, served on its address; returns the deployment file, a funded key file (0600) and the
   * keys of `accounts` more funded accounts (gas and tokens), for nodes that must pay gas without a faucet call each.
   */
  async function chain(host: string, accounts = 0): Promise<{ deployment: string; funderKey: string; url: string; keys: string[] }> {
    const deployment = join(dir, 'deployment.json')
    const { ready } = await start<{ url: string; accounts: { privateKey: string }[] }>(host, [
      'chain', '--host', testbed.hosts[host]!.address, '--port', '8545', '--accounts', String(1 + accounts), '--deployment-out', deployment, '--json',
    ])
    const funderKey = join(dir, 'funder.key')
    await writeKey(funderKey, ready.accounts[0]!.privateKey)
    return { deployment, funderKey, url: ready.url, keys: ready.accounts.slice(1).map((a) => a.privateKey) }
  }

  /** `hearth relay` on `host`, announcing its public address; returns its process and dialable address. */
  async function relay(host: string): Promise<Started<{ peerId: string; multiaddrs: string[] }> & { address: string }> {
    const publicAddress = testbed.hosts[host]!.address
    const started = await start<{ peerId: string; multiaddrs: string[] }>(host, [
      'relay', '--data-dir', join(dir, host), '--listen', '/ip4/0.0.0.0/tcp/7691', '--announce', `/ip4/${publicAddress}/tcp/7691`, '--json',
    ])
    const address = started.ready.multiaddrs.find((a) => a.includes(`/ip4/${publicAddress}/`))
    assert.ok(address !== undefined, `the relay announces its public address: ${started.ready.multiaddrs.join(', ')}`)
    return { ...started, address }
  }

  /**
   * A provider on `host` lending one thread. It claims its pay itself, so it needs gas: its node key is `key` (a
   * funded account of the chain) when given, else the development chain's faucet gives it some first. `more` are
   * further flags of `provider start` (services, region, prices).
   */
  async function provider(host: string, deployment: string, bootstrap: string[], key?: string, more: string[] = []): Promise<Started<{ address: string; peerId: string }>> {
    const dataDir = join(dir, host)
    if (key !== undefined) {
      await mkdir(dataDir, { recursive: true, mode: 0o700 })
      await writeKey(join(dataDir, keyFileName), key)
    } else {
      const funded = await testbed.run(host, process.execPath, [hearthBin, 'wallet', '--faucet', '--data-dir', dataDir, '--deployment', deployment, '--json'], { timeoutMs: 120_000 })
      assert.equal(funded.code, 0, funded.stderr)
    }
    return start(host, [
      'provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/0.0.0.0/tcp/7690', '--no-idle', '--deployment', deployment,
      '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', ...bootstrap.flatMap((address) => ['--bootstrap', address]), ...more,
    ])
  }

  /**
   * `hearth provider status` of the provider on `host`, asked on that host: the local API listens on the host's own
   * 127.0.0.1, which is not this machine's in another network namespace.
   */
  async function status(host: string): Promise<ProviderStatus> {
    const asked = await testbed.run(host, process.execPath, [hearthBin, 'provider', 'status', '--data-dir', join(dir, host), '--json'], { timeoutMs: 60_000 })
    assert.equal(asked.code, 0, asked.stderr)
    return JSON.parse(asked.stdout) as ProviderStatus
  }

  /** Polls a provider's status until `done` holds (a reachability check and a reservation take a few seconds). */
  async function waitForStatus(host: string, done: (status: ProviderStatus) => boolean, what: string): Promise<ProviderStatus> {
    const deadline = Date.now() + 120_000
    let current = await status(host)
    while (!done(current)) {
      if (Date.now() > deadline) assert.fail(`${what}: ${JSON.stringify(current.network)}`)
      await new Promise((resolve) => setTimeout(resolve, 500))
      current = await status(host)
    }
    return current
  }

  /**
   * `hearth run` of the word count (examples/wordcount, or `jobFile`) from `host`, joined through `bootstrap`: it exits 0,
   * fails no task, and its counts are exact. Returns its report and its stderr (the progress lines).
   */
  async function wordcount(host: string, run: { name: string; providers: number; bootstrap: string; deployment: string; funderKey: string; jobFile?: string; args?: string[] }): Promise<{ report: RunReport; stderr: string }> {
    const out = join(dir, `out-${run.name}`)
    const done = await testbed.run(host, process.execPath, [
      hearthBin, 'run', run.jobFile ?? join(wordcountExample, 'job.json'), '--providers', String(run.providers), '--json', '--out', out,
      '--data-dir', join(dir, `requestor-${run.name}`), ...(run.args ?? []),
      '--bootstrap', run.bootstrap, '--deployment', run.deployment, '--funder-key-file', run.funderKey,
    ], { timeoutMs: 300_000 })
    assert.equal(done.code, 0, done.stderr)
    const report = JSON.parse(done.stdout) as RunReport
    assert.deepEqual(report.failures, [])
    assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
    return { report, stderr: done.stderr }
  }

  return {
    start,
    chain,
    wordcount,
    relay,
    provider,
    status,
    waitForStatus,
    stopAll() {
      for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
    },
  }
}

async function writeKey(path: string, key: string): Promise<void> {
  await writeFile(path, key, { mode: 0o600 })
  await chmod(path, 0o600)
}

export type TestbedNodes = ReturnType<typeof testbedNodes>

/**
 * The testbed of one test file, built when the file loads: its own name prefix (`short` and this process's id, since
 * files run two at a time), a temporary folder, and the `hearth` nodes on it. After the file's tests, every node is
 * stopped and the testbed and folder are removed.
 */
export async function fileTestbed(short: string, name: string, spec: Omit<TestbedSpec, 'prefix'>): Promise<{ testbed: Testbed; dir: string; nodes: TestbedNodes }> {
  const dir = await mkdtemp(join(tmpdir(), `hearth-testbed-${name}-`))
  const opened: { testbed?: Testbed; nodes?: TestbedNodes } = {}
  after(async () => {
    opened.nodes?.stopAll()
    await opened.testbed?.down()
    await rm(dir, { recursive: true, force: true })
  })
  const testbed = (opened.testbed = await build({ prefix: `${short}${process.pid}`, ...spec }))
  const nodes = (opened.nodes = testbedNodes(testbed, dir))
  return { testbed, dir, nodes }
}
