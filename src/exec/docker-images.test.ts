// Image archives on a shared engine (security item 7): a requestor's archive never tags anything on the provider's
// engine, whatever tags it claims, and the images this provider loaded leave with the package cache's evictions, but
// only those, only when nothing uses them, and never by force. Against a real engine, as the other docker tests.
import assert from 'node:assert/strict'
import { execFileSync } from 'node:child_process'
import { createWriteStream } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { after, before, describe, it } from 'node:test'
import { hashFile, sha256Hex } from './content-hash.ts'
import type { DockerCall } from './docker-api.ts'
import { archiveImageId, createLoadedImages, inspectImage, loadImageArchive, saveImageArchive, untaggedImageArchive } from './docker-images.ts'
import type { ImageRemoval } from './docker-images.ts'
import { createDockerRuntime } from './docker-runtime.ts'
import type { DockerRuntime } from './docker-runtime.ts'
import { importBusyboxImage, startTestEngine } from './docker-test-image.ts'
import type { TestEngine } from './docker-test-image.ts'
import { createPackageCache } from './package-cache.ts'

const ownerTag = 'localhost/hearth-owner:latest'

let base: string
let engine: TestEngine
let runtime: DockerRuntime
/** The owner's own image, tagged by the owner: what a requestor must not be able to touch. */
let owner: string

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'hearth-docker-images-'))
  engine = await startTestEngine(join(base, 'podman'))
  runtime = createDockerRuntime({ socketPath: engine.socketPath })
  owner = await importBusyboxImage(runtime, base)
  await tag(owner, ownerTag)
})

after(async () => {
  await runtime?.close()
  await engine?.stop()
  await rm(base, { recursive: true, force: true })
})

async function tag(id: string, name: string): Promise<void> {
  const [repo, tagName] = name.split(/:(?=[^:/]+$)/)
  await runtime.api.json({ method: 'POST', path: `/images/${id}/tag`, query: { repo, tag: tagName } }, `tag ${id}`)
}

/** The image id a name points at on the engine, or undefined. */
async function tagTarget(name: string): Promise<string | undefined> {
  const answer = await runtime.api.call({ method: 'GET', path: `/images/${encodeURIComponent(name)}/json` })
  if (answer.status === 404) return undefined
  assert.equal(answer.status, 200, answer.body.toString())
  return (JSON.parse(answer.body.toString()) as { Id: string }).Id
}

/** An image built elsewhere and sent as an archive: made here, saved, then gone from the engine. */
async function requestorArchive(variant: string): Promise<{ id: string; path: string }> {
  const id = await importBusyboxImage(runtime, base, variant)
  const path = join(base, `${variant}.tar`)
  await saveImageArchive(runtime, id, path)
  // Only its import tag holds it: force removes that tag along, nothing of the owner's.
  await runtime.api.json({ method: 'DELETE', path: `/images/${id}`, query: { force: true } }, 'remove the requestor image')
  assert.equal(await runtime.hasImage(id), false)
  return { id, path }
}

/** The archive unpacked, changed by `edit`, and packed again: what a hostile requestor can send. */
async function rewriteArchive(path: string, name: string, edit: (dir: string) => Promise<void>): Promise<string> {
  const dir = join(base, `${name}-unpacked`)
  await mkdir(dir, { recursive: true })
  execFileSync('tar', ['-C', dir, '-xf', path])
  await edit(dir)
  const out = join(base, `${name}.tar`)
  execFileSync('tar', ['-C', dir, '-cf', out, '.'])
  return out
}

async function readManifest(dir: string): Promise<{ Config: string; RepoTags: string[] | null; Layers: string[] }> {
  return (JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as { Config: string; RepoTags: string[] | null; Layers: string[] }[])[0]!
}

/** Every way an archive can name its image: manifest RepoTags, the legacy `repositories` file, an OCI index annotation. */
async function claimTags(dir: string, names: string[]): Promise<void> {
  const manifest = await readManifest(dir)
  await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ ...manifest, RepoTags: names }]))
  const layerDir = manifest.Layers[0]!.replace(/\/layer\.tar$/, '')
  await writeFile(join(dir, 'repositories'), JSON.stringify(Object.fromEntries(names.map((name) => {
    const [repo, tagName] = name.split(/:(?=[^:/]+$)/)
    return [repo, { [tagName!]: layerDir }]
  }))))
  await mkdir(join(dir, 'blobs', 'sha256'), { recursive: true })
  const blob = async (bytes: Buffer): Promise<{ digest: string; size: number }> => {
    const digest = sha256Hex(bytes)
    await writeFile(join(dir, 'blobs', 'sha256', digest.slice('sha256:'.length)), bytes)
    return { digest, size: bytes.length }
  }
  const config = await blob(await readFile(join(dir, manifest.Config)))
  const layer = await blob(await readFile(join(dir, manifest.Layers[0]!)))
  const ociManifest = await blob(Buffer.from(JSON.stringify({
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', ...config },
    layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar', ...layer }],
  })))
  await writeFile(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }))
  await writeFile(join(dir, 'index.json'), JSON.stringify({
    schemaVersion: 2,
    manifests: [{ mediaType: 'application/vnd.oci.image.manifest.v1+json', ...ociManifest, annotations: { 'org.opencontainers.image.ref.name': names[0] } }],
  }))
}

/** Copies an archive into the package cache under its content id, as a finished transfer leaves it. */
async function cachePackage(cache: ReturnType<typeof createPackageCache>, path: string): Promise<string> {
  const contentId = await hashFile(path)
  await copyFile(path, cache.pathOf(contentId))
  return contentId
}

describe('image archives never tag', () => {
  it("loads a requestor's archive that claims the owner's tag untagged: the tag stays on the owner's image", async () => {
    const { id, path } = await requestorArchive('claims-owner-tag')
    const hostile = await rewriteArchive(path, 'claims-owner-tag-hostile', (dir) => claimTags(dir, [ownerTag, 'docker.io/library/busybox:latest']))
    assert.equal(await archiveImageId(hostile), id, 'the same image, only its names changed')

    // The control: given as it is, the engine does move the owner's tag (so the check below can fail).
    const raw = await runtime.api.call({ method: 'POST', path: '/images/load', query: { quiet: true }, file: hostile, contentType: 'application/x-tar', timeoutMs: 120_000 })
    assert.equal(raw.status, 200, raw.body.toString())
    assert.equal(await tagTarget(ownerTag), id, 'an archive loaded with its names takes the owner\'s tag')
    await runtime.api.json({ method: 'DELETE', path: `/images/${id}`, query: { force: true } }, 'undo the control')
    await tag(owner, ownerTag)
    assert.equal(await tagTarget(ownerTag), owner)

    assert.equal(await loadImageArchive(runtime, hostile, id), id)
    assert.equal(await tagTarget(ownerTag), owner, 'the owner\'s tag still names the owner\'s image')
    assert.equal(await tagTarget('docker.io/library/busybox:latest'), undefined, 'no name the archive claims was created')
    assert.deepEqual((await inspectImage(runtime, id))?.tags, [], 'the loaded image has no tag: it is known by its id only')
    assert.deepEqual((await inspectImage(runtime, owner))?.tags.sort(), ['docker.io/library/hearth-busybox:latest', ownerTag])
  })

  it('sends the engine only manifest.json without tags, config.json and the layers; finds a layer named through a link', async () => {
    const { id, path } = await requestorArchive('linked-layer')
    // docker's legacy layout: the manifest names <layer dir>/layer.tar, which podman's save makes a symlink.
    let linked = ''
    const legacy = await rewriteArchive(path, 'linked-layer-legacy', async (dir) => {
      const manifest = await readManifest(dir)
      linked = execFileSync('find', ['.', '-name', 'layer.tar', '-type', 'l'], { cwd: dir, encoding: 'utf8' }).trim().replace(/^\.\//, '')
      assert.match(linked, /^[0-9a-f]{64}\/layer\.tar$/, 'podman saves the legacy layer as a link')
      await claimTags(dir, [ownerTag])
      await writeFile(join(dir, 'manifest.json'), JSON.stringify([{ ...manifest, RepoTags: [ownerTag], Layers: [linked] }]))
    })
    const copy = join(base, 'linked-layer-untagged.tar')
    await pipeline(await untaggedImageArchive(legacy), createWriteStream(copy))
    assert.deepEqual(execFileSync('tar', ['-tf', copy], { encoding: 'utf8' }).trim().split('\n'), ['manifest.json', 'config.json', 'layer-0.tar'])
    assert.deepEqual(JSON.parse(execFileSync('tar', ['-xOf', copy, 'manifest.json'], { encoding: 'utf8' })), [{ Config: 'config.json', RepoTags: null, Layers: ['layer-0.tar'] }])
    assert.equal(await archiveImageId(copy), id)
    assert.equal(await loadImageArchive(runtime, legacy, id), id)
    assert.deepEqual((await inspectImage(runtime, id))?.tags, [])
    assert.equal(await tagTarget(ownerTag), owner)
  })
})

describe('loaded images leave with the package cache', () => {
  it('evicting an archive removes the image this provider loaded from it, after a restart too; never one the owner had', async () => {
    const dir = join(base, 'cache-evict')
    await mkdir(dir, { recursive: true })
    const file = join(dir, 'loaded-images.json')
    const first = createLoadedImages({ runtime, file })
    const cache = createPackageCache({ dir, maxBytes: 1 << 30, maxEntries: 16 })

    const mine = await requestorArchive('evicted')
    const mineArchive = await cachePackage(cache, mine.path)
    assert.equal(await first.load(mineArchive, cache.pathOf(mineArchive), mine.id), mine.id)
    // The owner's image, sent back as an archive: the engine held it before, so it is not this provider's to remove.
    const ownerPath = join(base, 'owner.tar')
    await saveImageArchive(runtime, owner, ownerPath)
    const ownerArchive = await cachePackage(cache, ownerPath)
    assert.equal(await first.load(ownerArchive, cache.pathOf(ownerArchive), owner), owner)
    assert.deepEqual(await first.list(), new Map([[mine.id, [mineArchive]]]))

    // A restart: a new record object reads the file; the cache now keeps nothing.
    const restarted = createLoadedImages({ runtime, file })
    const removals: ImageRemoval[] = []
    const evicting = createPackageCache({ dir, maxBytes: 0, maxEntries: 0, onEvict: async (contentId) => removals.push(...(await restarted.archiveEvicted(contentId))) })
    assert.deepEqual((await evicting.evict()).sort(), [mineArchive, ownerArchive].sort())
    assert.deepEqual(removals, [{ image: mine.id, outcome: 'removed' }])
    assert.equal(await runtime.hasImage(mine.id), false)
    assert.deepEqual((await inspectImage(runtime, owner))?.tags.sort(), ['docker.io/library/hearth-busybox:latest', ownerTag])
    assert.deepEqual(await restarted.list(), new Map())
    assert.deepEqual(JSON.parse(await readFile(file, 'utf8')), { version: 1, images: {} })
  })

  it('keeps an image a container or a tag uses, or a task holds, and never forces; removes it once nothing uses it', async () => {
    const dir = join(base, 'cache-kept')
    await mkdir(dir, { recursive: true })
    // A runtime of its own whose engine calls are seen: every removal it asks for must be without force.
    const watched = createDockerRuntime({ socketPath: engine.socketPath })
    const deletes: DockerCall[] = []
    const call = watched.api.call.bind(watched.api)
    watched.api.call = (request) => {
      if (request.method === 'DELETE') deletes.push(request)
      return call(request)
    }
    const loaded = createLoadedImages({ runtime: watched, file: join(dir, 'loaded-images.json') })
    const removals: ImageRemoval[] = []
    const cache = createPackageCache({ dir, maxBytes: 0, maxEntries: 0, onEvict: async (contentId) => removals.push(...(await loaded.archiveEvicted(contentId))) })

    const images: Record<'contained' | 'tagged' | 'held', string> = { contained: '', tagged: '', held: '' }
    for (const name of ['contained', 'tagged', 'held'] as const) {
      const archive = await requestorArchive(`kept-${name}`)
      const archiveId = await cachePackage(cache, archive.path)
      images[name] = await cache.using(archiveId, () => loaded.load(archiveId, cache.pathOf(archiveId), archive.id))
    }
    // A stopped container (created, never started) of the first; the owner tags the second; a task holds the third.
    const container = await runtime.api.json<{ Id: string }>({ method: 'POST', path: '/containers/create', json: { Image: images.contained, Cmd: ['true'] } }, 'create a container')
    await tag(images.tagged, 'localhost/owner-adopted:v1')
    const release = await loaded.hold(images.held)

    // Each eviction also retries the images earlier ones had to leave: the last word on each image counts.
    const outcomes = (): Map<string, string> => new Map(removals.map((removal) => [removal.image, removal.outcome]))
    await cache.evict()
    assert.deepEqual(outcomes(), new Map([[images.contained, 'in-use'], [images.tagged, 'tagged'], [images.held, 'held']]))
    for (const image of Object.values(images)) assert.equal(await runtime.hasImage(image), true)
    assert.equal(await tagTarget('localhost/owner-adopted:v1'), images.tagged)
    const inspected = await runtime.api.call({ method: 'GET', path: `/containers/${container.Id}/json` })
    assert.equal(inspected.status, 200, 'the container is still there')
    // The tagged image became the owner's: it leaves the record. The others wait for the next eviction.
    assert.deepEqual(await loaded.list(), new Map([[images.contained, []], [images.held, []]]))

    await runtime.api.json({ method: 'DELETE', path: `/containers/${container.Id}` }, 'remove the container')
    release()
    removals.length = 0
    await writeFile(cache.pathOf(sha256Hex('another package')), 'another package')
    await cache.evict()
    assert.deepEqual(outcomes(), new Map([[images.contained, 'removed'], [images.held, 'removed']]))
    assert.equal(await runtime.hasImage(images.contained), false)
    assert.equal(await runtime.hasImage(images.held), false)
    assert.equal(await tagTarget('localhost/owner-adopted:v1'), images.tagged, 'the owner\'s tagged image stays')
    assert.equal(await tagTarget(ownerTag), owner)
    assert.deepEqual(await loaded.list(), new Map())

    assert.ok(deletes.length >= 2, 'the removals went through the watched runtime')
    for (const request of deletes) assert.equal(request.query?.force, false, `${request.path} asked without force`)
    await watched.close()
  })
})
