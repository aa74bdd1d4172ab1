/**
 * Builds or removes a testbed (src/testbed/testbed.ts), an internet on this machine made of network namespaces.
 *
 *   node --import tsx scripts/testbed.ts up [--prefix tb] [--spec spec.json]
 *   node --import tsx scripts/testbed.ts down [--prefix tb]
 *   node --import tsx scripts/testbed.ts down --all
 *
 * `up` prints the hosts as JSON and exits, leaving the testbed (and its linkd) running; run programs in it with
 * `ip netns exec <netns> ...`. `down` removes everything, also after a crash. Needs root.
 */
import { readFile } from 'node:fs/promises'
import { parseArgs } from 'node:util'
import { build, down, downAll, type TestbedSpec } from '../src/testbed/testbed.ts'

/** Three regions, a relay and a chain node in public, providers behind both kinds of NAT, a requestor behind one. */
const defaultSpec: Omit<TestbedSpec, 'prefix'> = {
  regions: { eu: {}, us: {}, asia: {} },
  rttMs: { 'eu-us': 40, 'eu-asia': 80, 'us-asia': 80 },
  hosts: [
    { name: 'relay', region: 'eu' },
    { name: 'chain', region: 'eu' },
    { name: 'provider-cone', region: 'us', nat: 'cone' },
    { name: 'provider-symmetric', region: 'asia', nat: 'symmetric' },
    { name: 'requestor', region: 'eu', nat: 'cone' },
  ],
}

const usage = 'usage: scripts/testbed.ts up [--prefix tb] [--spec spec.json] | down [--prefix tb] | down --all'

async function readSpec(path: string | undefined, prefix: string | undefined): Promise<TestbedSpec> {
  const base = path === undefined ? { ...defaultSpec, prefix: 'tb' } : (JSON.parse(await readFile(path, 'utf8')) as TestbedSpec)
  return { ...base, prefix: prefix ?? base.prefix ?? 'tb' }
}

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: { prefix: { type: 'string' }, spec: { type: 'string' }, all: { type: 'boolean' } },
  })
  const [command] = positionals
  if (command === 'up' && values.all !== true) {
    const testbed = await build(await readSpec(values.spec, values.prefix))
    console.log(JSON.stringify({ prefix: testbed.prefix, hosts: testbed.hosts }, null, 2))
  } else if (command === 'down' && values.all === true && values.prefix === undefined) {
    const removed = await downAll()
    console.error(removed.length === 0 ? 'no testbed found' : `removed: ${removed.join(', ')}`)
  } else if (command === 'down' && values.all !== true && values.spec === undefined) {
    await down(values.prefix ?? 'tb')
  } else {
    console.error(usage)
    process.exitCode = 2
  }
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error)
  process.exitCode = 1
})
