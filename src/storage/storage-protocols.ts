/**
 * The wire between an owner's node and the providers that hold its pieces (piece-store.ts, dispersal.ts):
 * - `/hearth/storage/put/1`, a tunnel: the opening names the piece and its shape, then the piece's shards flow as raw
 *   bytes, and the provider answers with one JSON line, `{ "root": … }` (the Merkle root it computed) or
 *   `{ "error": … }`. Only a requestor with a live storage holding (an activity under a storage agreement) that has
 *   room may put; the piece is then its own.
 * - `/hearth/storage/read/1`, a blob: shards `fromStripe` to `fromStripe + count - 1` with their Merkle proofs. Reads
 *   and audits are the same request, so a provider cannot answer audits alone. Anyone who names a piece may read it:
 *   its id is random (a capability) and its bytes are ciphertext; that is how the key alone restores the manifest on
 *   a new machine.
 * - `/hearth/storage/pieces/1`: which of some pieces a provider holds (and their size), removing the owner's own.
 */
import { z } from 'zod'
import { defineBlobProtocol } from '../net/blob-protocol.ts'
import { defineProtocol } from '../net/protocol.ts'
import { defineTunnelProtocol } from '../net/tunnel.ts'

/** A piece's id: lower-case hex of its file's id, a dash, its index (or `m` for a manifest). */
export const pieceIdSchema = z.string().regex(/^[0-9a-f]{32}-(?:[0-9]{1,2}|m)$/, 'expected a piece id: 32 hex digits, a dash, a piece index')

/** The largest piece a provider takes in one put (a 64 GiB file at k = 4). */
export const maxPieceBytes = 16 * 1024 ** 3

/** The most bytes of shards one read answer carries. */
export const maxReadBytes = 8 * 1024 * 1024

export const piecePutProtocol = defineTunnelProtocol({
  id: '/hearth/storage/put/1',
  open: z.strictObject({
    pieceId: pieceIdSchema,
    shardBytes: z.number().int().positive().max(maxReadBytes),
    stripes: z.number().int().positive().max(1_000_000),
    /** Replace a piece of the same id that this requestor put before (the manifest, saved anew). */
    replace: z.boolean().optional(),
  }),
  maxOpenBytes: 1024,
  openTimeoutMs: 15_000,
  idleTimeoutMs: 60_000,
  maxConcurrentStreams: 64,
})
export type PiecePutOpen = z.output<typeof piecePutProtocol.open>

export const pieceReadProtocol = defineBlobProtocol({
  id: '/hearth/storage/read/1',
  request: z.strictObject({ pieceId: pieceIdSchema, fromStripe: z.number().int().nonnegative(), count: z.number().int().positive().max(1024) }),
  header: z.strictObject({
    shardBytes: z.number().int().positive(),
    stripes: z.number().int().positive(),
    /** One proof per shard, each a list of 32-byte sibling hashes in hex, leaf first. */
    proofs: z.array(z.array(z.string().regex(/^[0-9a-f]{64}$/)).max(40)).max(1024),
  }),
  maxRequestBytes: 512,
  maxHeaderBytes: 1024 * 1024,
  maxBodyBytes: maxReadBytes,
  bodyFrameBytes: 1024 * 1024,
  timeoutMs: 120_000,
  maxConcurrentStreams: 64,
})

export const piecesProtocol = defineProtocol({
  id: '/hearth/storage/pieces/1',
  request: z.discriminatedUnion('op', [
    z.strictObject({ op: z.literal('stat'), pieceIds: z.array(pieceIdSchema).max(256) }),
    z.strictObject({ op: z.literal('delete'), pieceIds: z.array(pieceIdSchema).max(256) }),
  ]),
  response: z.strictObject({
    pieces: z.array(z.strictObject({ pieceId: pieceIdSchema, held: z.boolean(), bytes: z.number().int().nonnegative() })).max(256),
    /** What this requestor's pieces take on the provider, and what its live holdings reserve for it. */
    usedBytes: z.number().int().nonnegative(),
    reservedBytes: z.number().int().nonnegative(),
  }),
  maxRequestBytes: 16 * 1024,
  maxResponseBytes: 32 * 1024,
  timeoutMs: 30_000,
  signed: true,
})
