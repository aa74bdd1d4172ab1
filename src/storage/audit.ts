/**
 * Audits on the owner's side: now and then each piece is challenged for shards at stripes the owner picks at random
 * (unpredictable to the provider, so it must keep every shard to pass), and the answers are checked against the
 * piece's Merkle root from the layout (dispersal.ts). A wrong, late or missing answer fails the audit; the caller
 * decides what follows (no pay for the period, lower reputation, the piece repaired elsewhere).
 */
import { randomInt } from 'node:crypto'
import type { FileLayout, PieceSource } from './dispersal.ts'
import { verifyProof } from './merkle.ts'

export interface AuditOutcome {
  piece: number
  stripe: number
  ok: boolean
  /** Why it failed: no answer in time, an answer of the wrong size, or one that fails its proof. */
  reason?: string
}

/** `count` distinct stripes of `stripes`, drawn at random (all of them when there are no more). */
export function chooseStripes(stripes: number, count: number, draw: (below: number) => number = randomInt): number[] {
  if (count >= stripes) return Array.from({ length: stripes }, (_, i) => i)
  const chosen = new Set<number>()
  while (chosen.size < count) chosen.add(draw(stripes))
  return [...chosen].sort((a, b) => a - b)
}

/** Challenges piece `piece` at `stripes` through `source`, each answer within `timeoutMs`; one outcome per stripe. */
export async function auditPiece(layout: FileLayout, piece: number, source: PieceSource, stripes: readonly number[], timeoutMs: number): Promise<AuditOutcome[]> {
  const root = Buffer.from(layout.pieces[piece]!.root, 'hex')
  const outcomes: AuditOutcome[] = []
  for (const stripe of stripes) {
    let timer: NodeJS.Timeout | undefined
    try {
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs)
      })
      const { shard, proof } = await Promise.race([source.read(stripe), late])
      if (shard.length !== layout.shardBytes) outcomes.push({ piece, stripe, ok: false, reason: `a shard of ${shard.length} bytes where ${layout.shardBytes} were stored` })
      else if (!verifyProof(root, layout.stripes, stripe, shard, proof)) outcomes.push({ piece, stripe, ok: false, reason: 'the shard fails its proof against the piece\'s root' })
      else outcomes.push({ piece, stripe, ok: true })
    } catch (error) {
      outcomes.push({ piece, stripe, ok: false, reason: error instanceof Error ? error.message : String(error) })
    } finally {
      clearTimeout(timer)
    }
  }
  return outcomes
}
