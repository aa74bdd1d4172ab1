/**
 * The pieces a provider holds for owners, on its disk and within the disk its owner offered: each piece is one file of
 * equal-size shards (dispersal.ts) and a small record of its shape and Merkle root. Room is reserved when a piece is
 * opened (its whole size, known up front), so a piece can never grow past what was offered; a piece's shards must come
 * in full and in number. The shards' leaf hashes are kept beside the piece. Reads and audits are answered with the shard and its Merkle proof (merkle.ts), so the owner
 * checks every answer against the root it kept; the provider holds only ciphertext. Each piece records its owner
 * (the requestor that put it), so only the owner removes or replaces it and its room counts against the owner's holdings.
 */
import { open, mkdir, readFile, readdir, rename, rm, writeFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { HearthError } from '../errors.ts'
import { leafHash, merkleLevels, merkleProof } from './merkle.ts'

export interface PieceShape {
  shardBytes: number
  stripes: number
}

export interface PieceWriter {
  write(shard: Uint8Array): Promise<void>
  /** Closes the piece once every shard came; resolves with its Merkle root (hex). */
  end(): Promise<string>
  /** Gives up the piece before it is whole: its room and its bytes go (nothing happens once it ended). */
  abort(): Promise<void>
}

export interface CreateOptions {
  /** Who put the piece (a requestor's address, lower-case); '' when nobody in particular. */
  owner?: string
  /** Writes a new version of a piece the same owner holds; the old one stays readable until the new one is whole. */
  replace?: boolean
}

export interface HeldPiece extends PieceShape {
  id: string
  owner: string
  bytes: number
}

export interface PieceStore {
  /** Room for a piece of `shape` under `id`: HEARTH_ERR_STORAGE_FULL when it would pass the offered disk. */
  create(id: string, shape: PieceShape, options?: CreateOptions): Promise<PieceWriter>
  /** Shard `stripe` of piece `id` with its proof. */
  read(id: string, stripe: number): Promise<{ shard: Uint8Array; proof: Uint8Array[] }>
  /** Shards `from` to `from + count - 1` of piece `id` (within it), read at once, with their proofs. */
  readRange(id: string, from: number, count: number): Promise<{ shards: Uint8Array; proofs: Uint8Array[][] }>
  has(id: string): boolean
  /** A whole piece's shape and owner. */
  get(id: string): HeldPiece | undefined
  /** Every whole piece. */
  list(): HeldPiece[]
  remove(id: string): Promise<void>
  /** Bytes held and reserved (pieces being written count in full). */
  usedBytes(): number
}

interface Held extends PieceShape {
  owner: string
  root: string | undefined
  levels: Buffer[][] | undefined
}

const pieceIdPattern = /^[a-z0-9][a-z0-9-]{0,99}$/

function checkId(id: string): void {
  if (!pieceIdPattern.test(id)) throw new HearthError('HEARTH_ERR_API_MISUSE', `piece id ${JSON.stringify(id.slice(0, 120))} is not one: expected lower-case letters, digits and dashes`)
}

const sizeOf = (shape: PieceShape): number => shape.shardBytes * shape.stripes

/** Shards `from` to `from + count - 1` of piece `id`, read at once, with their proofs. */
async function readShards(dir: string, held: ReadonlyMap<string, Held>, id: string, from: number, count: number): Promise<{ shards: Uint8Array; proofs: Uint8Array[][] }> {
  checkId(id)
  const piece = held.get(id)
  if (piece?.root === undefined) throw new HearthError('HEARTH_ERR_API_MISUSE', `this provider holds no piece ${id}`)
  if (!Number.isInteger(from) || !Number.isInteger(count) || from < 0 || count < 1 || from + count > piece.stripes) {
    throw new HearthError('HEARTH_ERR_API_MISUSE', `piece ${id} has no stripes ${from} to ${from + count - 1} (it has ${piece.stripes})`)
  }
  const handle = await open(join(dir, `${id}.piece`), 'r')
  try {
    const shards = new Uint8Array(count * piece.shardBytes)
    await handle.read(shards, 0, shards.length, from * piece.shardBytes)
    return { shards, proofs: Array.from({ length: count }, (_, i) => merkleProof(piece.levels!, from + i)) }
  } finally {
    await handle.close()
  }
}

/** Opens the store in `dir` (made if missing): pieces finished before are held again; unfinished ones are dropped. */
export async function openPieceStore(init: { dir: string; maxBytes: number }): Promise<PieceStore> {
  const { dir, maxBytes } = init
  await mkdir(dir, { recursive: true, mode: 0o700 })
  const held = new Map<string, Held>()
  for (const name of await readdir(dir)) {
    if (!name.endsWith('.json')) continue
    const id = name.slice(0, -5)
    const record = JSON.parse(await readFile(join(dir, name), 'utf8')) as PieceShape & { root: string; leaves: string[]; owner?: string }
    held.set(id, { shardBytes: record.shardBytes, stripes: record.stripes, owner: record.owner ?? '', root: record.root, levels: merkleLevels(record.leaves.map((leaf) => Buffer.from(leaf, 'hex'))) })
  }
  for (const name of await readdir(dir)) {
    if ((name.endsWith('.piece') && !held.has(name.slice(0, -6))) || name.endsWith('.next')) await rm(join(dir, name), { force: true })
  }
  /** Pieces being written, by id: their room is taken from the start. */
  const writing = new Map<string, number>()
  const used = (): number => [...held.values()].reduce((sum, piece) => sum + (piece.root === undefined ? 0 : sizeOf(piece)), 0) + [...writing.values()].reduce((sum, bytes) => sum + bytes, 0)

  return {
    async create(id, shape, options = {}) {
      checkId(id)
      if (!Number.isInteger(shape.shardBytes) || shape.shardBytes < 1 || !Number.isInteger(shape.stripes) || shape.stripes < 1) {
        throw new HearthError('HEARTH_ERR_API_MISUSE', `a piece needs whole, positive shard bytes and stripes (got ${shape.shardBytes} and ${shape.stripes})`)
      }
      const owner = options.owner ?? ''
      const before = held.get(id)
      if (writing.has(id)) throw new HearthError('HEARTH_ERR_STORAGE_STATE', `piece ${id} is being written already`, { hint: 'wait for that put to end' })
      if (before !== undefined && (options.replace !== true || before.owner !== owner)) {
        throw new HearthError('HEARTH_ERR_STORAGE_STATE', `piece ${id} exists already`, { hint: options.replace === true ? 'only the owner of a piece replaces it' : 'put it under a new id' })
      }
      if (used() + sizeOf(shape) > maxBytes) {
        throw new HearthError('HEARTH_ERR_STORAGE_FULL', `a piece of ${sizeOf(shape)} bytes does not fit: ${used()} of the ${maxBytes} bytes offered for storage are taken`, { hint: 'place it with another provider' })
      }
      writing.set(id, sizeOf(shape))
      const leaves: Buffer[] = []
      const temp = join(dir, `${id}.next`)
      let handle: FileHandle | undefined
      try {
        handle = await open(temp, 'w', 0o600)
      } catch (error) {
        writing.delete(id)
        throw error
      }
      const fail = async (message: string): Promise<never> => {
        await handle?.close()
        handle = undefined
        writing.delete(id)
        await rm(temp, { force: true })
        throw new HearthError('HEARTH_ERR_API_MISUSE', `piece ${id}: ${message}`)
      }
      return {
        async write(shard) {
          if (handle === undefined) return fail('it is closed')
          if (shard.length !== shape.shardBytes) return fail(`a shard of ${shard.length} bytes where ${shape.shardBytes} were agreed`)
          if (leaves.length >= shape.stripes) return fail(`more than the ${shape.stripes} shards agreed`)
          await handle.write(shard)
          leaves.push(leafHash(shard))
        },
        async end() {
          if (handle === undefined) return fail('it is closed')
          if (leaves.length !== shape.stripes) return fail(`${leaves.length} shards of the ${shape.stripes} agreed`)
          await handle.sync()
          await handle.close()
          handle = undefined
          const levels = merkleLevels(leaves)
          const root = levels.at(-1)![0]!.toString('hex')
          // The leaf hashes are kept with the piece: a shard that rots on disk then fails its own proof only, not its
          // neighbours' (a tree rebuilt from the file would carry the rot into every path).
          const record = { shardBytes: shape.shardBytes, stripes: shape.stripes, owner, root, leaves: leaves.map((leaf) => leaf.toString('hex')) }
          await rename(temp, join(dir, `${id}.piece`))
          await writeFile(join(dir, `${id}.json`), JSON.stringify(record), { mode: 0o600 })
          held.set(id, { ...shape, owner, root, levels })
          writing.delete(id)
          return root
        },
        async abort() {
          if (handle === undefined) return
          await fail('aborted').catch(() => undefined)
        },
      }
    },

    async read(id, stripe) {
      const piece = held.get(id)
      if (piece?.root !== undefined && (!Number.isInteger(stripe) || stripe < 0 || stripe >= piece.stripes)) throw new HearthError('HEARTH_ERR_API_MISUSE', `piece ${id} has no stripe ${stripe} (it has ${piece.stripes})`)
      const { shards, proofs } = await readShards(dir, held, id, stripe, 1)
      return { shard: shards, proof: proofs[0]! }
    },

    readRange: (id, from, count) => readShards(dir, held, id, from, count),

    has: (id) => held.get(id)?.root !== undefined,
    get(id) {
      const piece = held.get(id)
      return piece?.root === undefined ? undefined : { id, owner: piece.owner, shardBytes: piece.shardBytes, stripes: piece.stripes, bytes: sizeOf(piece) }
    },
    list: () => [...held.entries()].filter(([, piece]) => piece.root !== undefined).map(([id, piece]) => ({ id, owner: piece.owner, shardBytes: piece.shardBytes, stripes: piece.stripes, bytes: sizeOf(piece) })),

    async remove(id) {
      checkId(id)
      held.delete(id)
      await rm(join(dir, `${id}.json`), { force: true })
      await rm(join(dir, `${id}.piece`), { force: true })
    },

    usedBytes: used,
  }
}
