/**
 * Storage from the command line, each node its own process on a shared development chain: three `hearth provider
 * start --storage` in three regions, and `hearth requestor start` storing 2 of 3. `hearth store put|get|ls|status|rm`
 * work on files; `hearth store s3` serves the same store to two independent S3 clients (the AWS SDK, multipart
 * included, and minio), refusing wrong credentials; the node stopped and started again still gives every object back;
 * and the storage key alone, imported into a new node with a wallet of its own, restores the manifest from the network.
 */
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { CreateBucketCommand, DeleteObjectCommand, GetObjectCommand, ListObjectsV2Command, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { Upload } from '@aws-sdk/lib-storage'
import { Client as MinioClient } from 'minio'
import { buildContracts } from '../scripts/build-contracts.ts'
import { devAccountKey, startChain, type RunningChain } from '../src/cli/chain-command.ts'
import { capture, hearth } from '../src/cli/testdata/run-cli.ts'
import { hearthProcesses } from './support/hearth-process.ts'
import type { RequestorNodeStatus } from '../src/requestor/requestor-api.ts'
import { referenceCounts, wordcountExample, wordcountTexts } from './support/wordcount.ts'

const regions = ['eu', 'us', 'ap']

const processes = hearthProcesses()
const startProcess = processes.start

async function json<T>(...args: string[]): Promise<T> {
  const result = await hearth([...args, '--json'])
  assert.equal(result.code, 0, `hearth ${args.join(' ')}: ${result.stderr}`)
  return JSON.parse(result.stdout) as T
}

async function bodyOf(stream: unknown): Promise<Buffer> {
  return Buffer.from(await (stream as { transformToByteArray(): Promise<Uint8Array> }).transformToByteArray())
}

describe('hearth store and its S3 endpoint, each node its own process', { timeout: 600_000 }, () => {
  let dir: string
  let chain: RunningChain
  let requestorDir: string
  let requestorArgs: (dataDir: string) => string[]
  let node: Awaited<ReturnType<typeof startProcess>>
  const file = randomBytes(3 * 1024 * 1024 + 4321)

  const waitForOffers = async (dataDir: string): Promise<void> => {
    for (let i = 0; (await json<RequestorNodeStatus>('requestor', 'status', '--data-dir', dataDir)).offers < 3; i++) {
      assert.ok(i < 300, 'the providers\' offers did not reach the requestor node')
      await new Promise((done) => setTimeout(done, 200))
    }
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'hearth-store-cli-'))
    await buildContracts()
    const deploymentFile = join(dir, 'deployment.json')
    chain = await startChain({ port: 0, accounts: 4, deploymentOut: deploymentFile }, capture().io)
    const bootstrap: string[] = []
    for (const index of [1, 2, 3]) {
      const dataDir = join(dir, `provider-${index}`)
      await mkdir(dataDir, { recursive: true, mode: 0o700 })
      await writeFile(join(dataDir, 'node.key'), `${devAccountKey(index)}\n`, { mode: 0o600 })
      await chmod(join(dataDir, 'node.key'), 0o600)
      const started = await startProcess([
        'provider', 'start', '--data-dir', dataDir, '--listen', '/ip4/127.0.0.1/tcp/0', '--no-idle', '--deployment', deploymentFile,
        '--threads', '1', '--memory-gib', '1', '--disk-gib', '1', '--region', regions[index - 1]!, '--storage', '--storage-gib', '2', '--storage-price', '1',
      ])
      bootstrap.push((started.ready['multiaddrs'] as string[])[0]!)
    }
    const funderKeyFile = join(dir, 'funder.key')
    await writeFile(funderKeyFile, `${devAccountKey(0)}\n`, { mode: 0o600 })
    await chmod(funderKeyFile, 0o600)
    requestorArgs = (dataDir) => ['requestor', 'start', '--data-dir', dataDir, '--deployment', deploymentFile, '--funder-key-file', funderKeyFile, '--bootstrap', ...bootstrap, '--storage-code', '2+1']
    requestorDir = join(dir, 'requestor')
    node = await startProcess(requestorArgs(requestorDir))
    await waitForOffers(requestorDir)
    await writeFile(join(dir, 'file.bin'), file)
  })

  after(async () => {
    processes.killAll()
    await chain?.close()
    await rm(dir, { recursive: true, force: true })
  })

  it('puts a file in pieces over three regions and gets it back whole and in part', async () => {
    const put = await json<{ size: number; pieces: number }>('store', 'put', join(dir, 'file.bin'), 'backups/2026/file.bin', '--data-dir', requestorDir)
    assert.deepEqual([put.size, put.pieces], [file.length, 3])
    const listed = await json<{ key: string; size: number }[]>('store', 'ls', 'backups/2026/', '--data-dir', requestorDir)
    assert.deepEqual(listed.map((o) => [o.key, o.size]), [['2026/file.bin', file.length]])
    const status = await json<{ objects: { pieces: { region: string }[] }[] }>('store', 'status', 'backups/2026/file.bin', '--data-dir', requestorDir)
    assert.deepEqual(status.objects[0]!.pieces.map((p) => p.region).sort(), [...regions].sort())

    await json('store', 'get', 'backups/2026/file.bin', join(dir, 'back.bin'), '--data-dir', requestorDir)
    assert.ok((await readFile(join(dir, 'back.bin'))).equals(file))
    await json('store', 'get', 'backups/2026/file.bin', join(dir, 'tail.bin'), '--range', '-1000', '--data-dir', requestorDir)
    assert.ok((await readFile(join(dir, 'tail.bin'))).equals(file.subarray(file.length - 1000)))
    const missing = await hearth(['store', 'get', 'backups/none.bin', join(dir, 'none.bin'), '--data-dir', requestorDir])
    assert.notEqual(missing.code, 0)
    assert.match(missing.stderr, /no object backups\/none\.bin/)
  })

  it('serves the store to the AWS SDK and to minio, multipart and ranges included; wrong credentials are refused', async () => {
    const s3 = await json<{ url: string; accessKeyId: string; secretAccessKey: string }>('store', 's3', '--data-dir', requestorDir)
    assert.match(s3.url, /^http:\/\/127\.0\.0\.1:\d+$/)
    const client = new S3Client({ endpoint: s3.url, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey } })
    await client.send(new CreateBucketCommand({ Bucket: 'media' }))
    await client.send(new PutObjectCommand({ Bucket: 'media', Key: 'notes/hello.txt', Body: 'hello from S3', ContentType: 'text/plain' }))
    const big = randomBytes(11 * 1024 * 1024 + 17)
    const upload = new Upload({ client, params: { Bucket: 'media', Key: 'video/clip.bin', Body: big }, partSize: 5 * 1024 * 1024, queueSize: 2 })
    const done = await upload.done()
    assert.match(String(done.ETag), /-3"$/)
    const list = await client.send(new ListObjectsV2Command({ Bucket: 'media', Prefix: 'video/' }))
    assert.deepEqual(list.Contents?.map((o) => [o.Key, o.Size]), [['video/clip.bin', big.length]])
    const ranged = await client.send(new GetObjectCommand({ Bucket: 'media', Key: 'video/clip.bin', Range: 'bytes=5242870-5242900' }))
    assert.ok((await bodyOf(ranged.Body)).equals(big.subarray(5242870, 5242901)))
    assert.equal((await bodyOf((await client.send(new GetObjectCommand({ Bucket: 'media', Key: 'notes/hello.txt' }))).Body)).toString(), 'hello from S3')

    const port = Number(new URL(s3.url).port)
    const minio = new MinioClient({ endPoint: '127.0.0.1', port, useSSL: false, accessKey: s3.accessKeyId, secretKey: s3.secretAccessKey, pathStyle: true, region: 'us-east-1' })
    await minio.putObject('media', 'minio/one.txt', Buffer.from('put by minio'))
    const partial = await minio.getPartialObject('media', 'notes/hello.txt', 6, 4)
    const chunks: Buffer[] = []
    for await (const chunk of partial) chunks.push(chunk as Buffer)
    assert.equal(Buffer.concat(chunks).toString(), 'from')
    // The same store under both clients: what minio put is seen through the AWS SDK.
    assert.equal((await bodyOf((await client.send(new GetObjectCommand({ Bucket: 'media', Key: 'minio/one.txt' }))).Body)).toString(), 'put by minio')

    const stranger = new S3Client({ endpoint: s3.url, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: 'not-the-secret' } })
    await assert.rejects(stranger.send(new ListObjectsV2Command({ Bucket: 'media' })), (error: Error) => error.name === 'SignatureDoesNotMatch')
    const wrongMinio = new MinioClient({ endPoint: '127.0.0.1', port, useSSL: false, accessKey: 'HEARTHNOBODY', secretKey: 'nothing', pathStyle: true, region: 'us-east-1' })
    await assert.rejects(wrongMinio.statObject('media', 'notes/hello.txt'), (error: Error & { code?: string }) => error.code === 'InvalidAccessKeyId' || error.code === 'AccessDenied' || /403|Forbidden/.test(error.message))

    await client.send(new DeleteObjectCommand({ Bucket: 'media', Key: 'minio/one.txt' }))
    const after = await client.send(new ListObjectsV2Command({ Bucket: 'media' }))
    assert.deepEqual(after.Contents?.map((o) => o.Key), ['notes/hello.txt', 'video/clip.bin'])
    client.destroy()
    stranger.destroy()
  })

  it('gives every object back after the node stops and starts again', async () => {
    assert.equal((await hearth(['requestor', 'stop', '--data-dir', requestorDir])).code, 0)
    await node.exited
    node = await startProcess(requestorArgs(requestorDir))
    await waitForOffers(requestorDir)
    const status = await json<{ holdings: { live: boolean }[] }>('store', 'status', '--data-dir', requestorDir)
    assert.ok(status.holdings.length >= 3 && status.holdings.every((h) => h.live), JSON.stringify(status.holdings))
    await json('store', 'get', 'backups/2026/file.bin', join(dir, 'again.bin'), '--data-dir', requestorDir)
    assert.ok((await readFile(join(dir, 'again.bin'))).equals(file))
  })

  it('restores the manifest from the network on a new node with the storage key alone', async () => {
    const exported = await hearth(['store', 'key', 'export', '--data-dir', requestorDir])
    assert.equal(exported.code, 0, exported.stderr)
    assert.match(exported.stderr, /keep a copy of it somewhere safe/)
    await writeFile(join(dir, 'key.txt'), exported.stdout, { mode: 0o600 })
    const fresh = join(dir, 'new-machine')
    const imported = await hearth(['store', 'key', 'import', join(dir, 'key.txt'), '--data-dir', fresh])
    assert.equal(imported.code, 0, imported.stderr)
    // A key already in use is never replaced.
    const again = await hearth(['store', 'key', 'import', join(dir, 'key.txt'), '--data-dir', requestorDir])
    assert.notEqual(again.code, 0)
    await startProcess(requestorArgs(fresh))
    await waitForOffers(fresh)
    const restored = await json<{ objects: number }>('store', 'restore', '--data-dir', fresh)
    assert.equal(restored.objects, 3)
    // This node's wallet is not the one that stored them: adopted, every object is stored again under its own agreements.
    const adopted = await json<{ objects: number }>('store', 'restore', '--adopt', '--data-dir', fresh)
    assert.equal(adopted.objects, 3)
    const mine = await json<{ holdings: { live: boolean }[]; objects: { pieces: unknown[] }[] }>('store', 'status', '--data-dir', fresh)
    assert.ok(mine.holdings.length >= 3 && mine.holdings.every((h) => h.live), JSON.stringify(mine.holdings))
    assert.ok(mine.objects.every((o) => o.pieces.length === 3))
    await json('store', 'get', 'media/video/clip.bin', join(dir, 'restored.bin'), '--range', '0-99', '--data-dir', fresh)
    await json('store', 'get', 'backups/2026/file.bin', join(dir, 'restored-file.bin'), '--data-dir', fresh)
    assert.ok((await readFile(join(dir, 'restored-file.bin'))).equals(file))
  })

  it('runs a map-reduce over stored objects: the job names store:// inputs, the node reads them back for it', async () => {
    for (const name of ['hearth.txt', 'market.txt', 'sandbox.txt']) await json('store', 'put', join(wordcountExample, name), `texts/corpus/${name}`, '--data-dir', requestorDir)
    const job = JSON.parse(await readFile(join(wordcountExample, 'job.json'), 'utf8')) as Record<string, unknown>
    const jobFile = join(dir, 'stored-wordcount.json')
    await writeFile(jobFile, JSON.stringify({ ...job, package: join(wordcountExample, String(job['package'])), inputs: ['store://texts/corpus/'] }))
    const out = join(dir, 'wordcount-out')
    const run = await hearth(['run', jobFile, '--providers', '2', '--json', '--out', out, '--data-dir', join(dir, 'run'), '--store-node', requestorDir])
    assert.equal(run.code, 0, run.stderr)
    assert.match(run.stderr, /read 3 inputs back from storage/)
    assert.equal(await readFile(join(out, 'counts.tsv'), 'utf8'), referenceCounts(...(await wordcountTexts())))
    // The decrypted inputs were removed once the job ended.
    assert.deepEqual((await readdir(dir)).filter((name) => name.startsWith('.hearth-store')), [])
  })

  it('removes an object, then its empty bucket', async () => {
    await json('store', 'rm', 'backups/2026/file.bin', '--data-dir', requestorDir)
    assert.deepEqual(await json('store', 'ls', 'backups', '--data-dir', requestorDir), [])
    await json('store', 'rm', 'backups', '--data-dir', requestorDir)
    const buckets = await json<{ name: string }[]>('store', 'ls', '--data-dir', requestorDir)
    assert.deepEqual(buckets.map((b) => b.name), ['media', 'texts'])
  })
})
