/**
 * Offers are self-reported: threads, CPU score. GPU markets have been cheated exactly that way (a renter paid for four
 * cards and got one smaller), so a requestor that relies on a claim checks it when an agreement starts, with a short
 * probe: the built-in `probe` workload (a fixed amount of single-threaded work that prints a checksum of every step)
 * runs once with almost no work (the round trip's own cost), once with the probe's work, then once on every offered
 * thread at the same time.
 *
 * - Threads: a machine with the threads it claims does them all in about the time of one; with fewer it takes
 *   proportionally longer. Both runs are on the provider within a second, so the load on either side cancels out.
 * - Speed: the lone run's time, less the round trip's own, is compared with this machine doing the same work, scaled
 *   by both CPU scores. The two machines' loads differ, so the margin is wide.
 * - Every run must print the checksum this machine computed: the work cannot be skipped.
 *
 * A provider that delivers less than `minShare` of a claim, in two measurements, is over-claiming: the caller pays nothing for the probe,
 * gives it no work, and records it in the reputation book. The measurement is only as good as the machines are quiet;
 * on the embedded network every provider shares this machine, so there it measures the sharing, not the claims.
 */

export interface ProbeClaims {
  /** `golem.inf.cpu.threads` of the offer (capped by the caller). */
  threads: number
  /** `hearth.inf.cpu.score` of the offer, when stated. */
  cpuScore: number | undefined
}

export interface ProbeMeasurement {
  /** Round trip of a run with almost no work: what a round trip costs apart from the work. */
  emptyWallMs: number
  /** Round trip of the probe's work alone on the provider. */
  soloWallMs: number
  /** Round trip of `threads` runs of the probe's work sent at once. */
  parallelWallMs: number
  /** This machine doing the same work (its metered run time), and its own CPU score, measured just before. */
  localWorkMs: number
  localScore: number
}

export interface ProbeVerdict {
  claims: ProbeClaims
  /** Thread-equivalents delivered: claimed threads × time of the work alone / time of all at once. */
  measuredThreads: number
  /** The CPU score the lone run implies, by this machine's run and score. */
  measuredScore: number
  /** Why the provider counts as over-claiming; undefined when it delivers what it offers (within the margin). */
  overClaimed: string | undefined
}

/** The share of a claim a provider must deliver; below it, the claim was false. */
export const defaultProbeMinShare = 1 / 3

export function judgeProbe(claims: ProbeClaims, measured: ProbeMeasurement, minShare = defaultProbeMinShare): ProbeVerdict {
  // The work's own time on the provider: the round trip less what a round trip costs anyway (never below 1 ms).
  const soloWorkMs = Math.max(1, measured.soloWallMs - measured.emptyWallMs)
  const parallelWorkMs = Math.max(1, measured.parallelWallMs - measured.emptyWallMs)
  const measuredThreads = claims.threads <= 1 ? claims.threads : Math.min(claims.threads, (claims.threads * soloWorkMs) / parallelWorkMs)
  const measuredScore = (measured.localScore * measured.localWorkMs) / soloWorkMs
  const reasons: string[] = []
  if (claims.threads > 1 && measuredThreads < claims.threads * minShare) {
    reasons.push(`it offers ${claims.threads} threads and ran ${claims.threads} probes at once as if it had ${measuredThreads.toFixed(1)}`)
  }
  if (claims.cpuScore !== undefined && claims.cpuScore > 0 && measuredScore < claims.cpuScore * minShare) {
    reasons.push(`it offers a CPU score of ${claims.cpuScore} and worked as a machine of score ${Math.round(measuredScore)} would`)
  }
  return { claims, measuredThreads, measuredScore, overClaimed: reasons.length === 0 ? undefined : reasons.join('; ') }
}

/** Rounds of 100,000 steps in the probe's work: about 100 ms on a desktop core, against a round trip of a few ms. */
export const probeRounds = 500
