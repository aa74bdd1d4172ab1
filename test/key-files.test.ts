/**
 * Every key file Hearth reads goes through one checked reader (readKeyFile in identity/node-identity.ts): the funder
 * key of `hearth demo` and `hearth run`, the deployer key of `hearth deploy`, the key `hearth wallet send` spends
 * from. A key file that group or others can read is refused with a clear error and exit code 2, before anything
 * starts; so is one that holds no key, and its content is never echoed.
 */
import assert from 'node:assert/strict'
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, describe, it } from 'node:test'
import { isHearthError } from '../src/errors.ts'
import { generateIdentity, readKeyFile } from '../src/identity/node-identity.ts'
import { hearth } from '../src/cli/testdata/run-cli.ts'

const dir = await mkdtemp(join(tmpdir(), 'hearth-key-files-'))
after(() => rm(dir, { recursive: true, force: true }))
const identity = generateIdentity()

async function keyFile(name: string, mode: number, content = `${identity.privateKey}\n`): Promise<string> {
  const path = join(dir, name)
  await writeFile(path, content, { mode })
  // writeFile's mode passes through the umask; set it exactly.
  await chmod(path, mode)
  return path
}


describe('key files', () => {
  it('readKeyFile takes a 0600 key and refuses one group or others can read, with a chmod hint', async () => {
    const good = await keyFile('good.key', 0o600)
    assert.equal((await readKeyFile(good)).address, identity.address)
    for (const mode of [0o640, 0o604, 0o644]) {
      const loose = await keyFile(`loose-${mode.toString(8)}.key`, mode)
      await assert.rejects(readKeyFile(loose, 'funder key file'), (error: unknown) =>
        isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') &&
        error.shortMessage.includes(`The funder key file ${loose} is accessible by group or others (mode 0${mode.toString(8)})`) &&
        error.hint?.includes(`chmod 600 ${loose}`) === true)
    }
    await assert.rejects(readKeyFile(join(dir, 'absent.key')), (error: unknown) => isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && /Cannot read the key file/.test(error.message))
    const secretish = 'deadbeef'.repeat(7)
    const malformed = await keyFile('malformed.key', 0o600, `${secretish}\n`)
    await assert.rejects(readKeyFile(malformed), (error: unknown) => isHearthError(error, 'HEARTH_ERR_IDENTITY_KEY') && /is malformed/.test(error.message) && !error.message.includes(secretish))
  })

  it('hearth demo --funder-key-file: a key others can read is refused with exit 2 before any chain is reached', async () => {
    const loose = await keyFile('demo-funder.key', 0o644)
    const result = await hearth(['demo', '--rpc', 'http://127.0.0.1:1', '--deployment', join(dir, 'no-such-deployment.json'), '--funder-key-file', loose, '--out', join(dir, 'out')])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /funder key file .*demo-funder\.key is accessible by group or others \(mode 0644\)/)
    assert.match(result.stderr, /chmod 600/)
  })

  it('hearth run --bootstrap … --funder-key-file: refused the same way, before the network is joined', async () => {
    const loose = await keyFile('run-funder.key', 0o640)
    const result = await hearth([
      'run', join(dir, 'job.json'), '--bootstrap', '/ip4/127.0.0.1/tcp/1/p2p/16Uiu2HAmBo3cPNdpN1AyzxiUAPCSvgXzu5TPwqGkKgm6i9gFm7ay',
      '--rpc', 'http://127.0.0.1:1', '--deployment', join(dir, 'no-such-deployment.json'), '--funder-key-file', loose, '--data-dir', join(dir, 'requestor'),
    ])
    assert.equal(result.code, 2)
    assert.match(result.stderr, /funder key file .*run-funder\.key is accessible by group or others \(mode 0640\)/)
  })

  it('hearth deploy --key-file: refused with exit 2; a file without a key too, without echoing it', async () => {
    const loose = await keyFile('deployer.key', 0o604)
    const refused = await hearth(['deploy', '--rpc', 'http://127.0.0.1:1', '--key-file', loose, '--out', join(dir, 'never.json')])
    assert.equal(refused.code, 2)
    assert.match(refused.stderr, /deployer key file .*deployer\.key is accessible by group or others/)
    const junk = await keyFile('junk.key', 0o600, 'not-a-key-but-maybe-a-password\n')
    const malformed = await hearth(['deploy', '--rpc', 'http://127.0.0.1:1', '--key-file', junk, '--out', join(dir, 'never.json')])
    assert.equal(malformed.code, 2)
    assert.match(malformed.stderr, /deployer key file .*junk\.key is malformed/)
    assert.ok(!malformed.stderr.includes('maybe-a-password'))
  })
})
