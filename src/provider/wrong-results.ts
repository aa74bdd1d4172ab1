/**
 * A dishonest provider's way of returning wrong results, for the devnet's bad-actor mode: some completed tasks have
 * their outputs changed before the result is hashed and signed, so the result is correctly signed and wrong. Signatures
 * prove who answered, not that the answer is right; this is what verification (quorum, spot checks) has to catch.
 *
 * The changes look like plausible work rather than noise: in text that holds numbers one number is changed (a wrong
 * count, a wrong score); anything else has a sixteenth of its bytes inverted in one run, as if part of the work was
 * skipped — far beyond any tolerance an image comparison allows. An empty output gains a line.
 */
import { HearthError } from '../errors.ts'
import { seededRandom } from '../seeded-random.ts'

export interface WrongResultsOptions {
  /** Probability in [0, 1] that a completed task's outputs are changed. */
  rate: number
  /** Seed of the generator behind both the choice of tasks and the changes; runs with the same seed choose alike. */
  seed?: number
}

export interface WrongResults {
  /** Draws once: true when this task's outputs are to be changed. */
  strikes(): boolean
  /** A changed copy of one output's bytes; never equal to the input. */
  corrupt(bytes: Uint8Array): Buffer
}


const isDigit = (byte: number): boolean => byte >= 0x30 && byte <= 0x39

/** Text is what decodes as UTF-8 and holds no NUL byte. */
function looksLikeText(bytes: Uint8Array): boolean {
  if (bytes.includes(0)) return false
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes)
    return true
  } catch {
    return false
  }
}

export function createWrongResults(options: WrongResultsOptions): WrongResults {
  if (!Number.isFinite(options.rate) || options.rate < 0 || options.rate > 1) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `the wrong-result rate is ${options.rate}; it must be from 0 to 1`, {
      hint: 'pass a probability such as 0.5',
    })
  }
  const random = seededRandom(options.seed ?? Math.floor(Math.random() * 2 ** 32))
  const below = (n: number): number => Math.floor(random() * n)

  return {
    strikes: () => random() < options.rate,

    corrupt(bytes) {
      const out = Buffer.from(bytes)
      if (out.length === 0) return Buffer.from('1\n')
      if (looksLikeText(out)) {
        // The runs of digits; one of them, chosen at random, gets 1 to 9 added as a number (…9 + 1 = …10), so the
        // text stays well formed and only that number is wrong. Whole numbers and integer parts go first: a change
        // in the fourth decimal could pass a comparison with a tolerance.
        const runs: { start: number; end: number; fraction: boolean }[] = []
        for (let i = 0; i < out.length; i++) {
          if (!isDigit(out[i]!)) continue
          const start = i
          while (i < out.length && isDigit(out[i]!)) i++
          runs.push({ start, end: i, fraction: start > 0 && out[start - 1] === 0x2e })
        }
        const whole = runs.filter((run) => !run.fraction)
        const candidates = whole.length > 0 ? whole : runs
        if (candidates.length > 0) {
          const run = candidates[below(candidates.length)]!
          const value = BigInt(out.subarray(run.start, run.end).toString('latin1')) + BigInt(1 + below(9))
          const digits = value.toString().padStart(run.end - run.start, '0')
          return Buffer.concat([out.subarray(0, run.start), Buffer.from(digits, 'latin1'), out.subarray(run.end)])
        }
      }
      const length = Math.max(1, Math.ceil(out.length / 16))
      const start = below(out.length - length + 1)
      for (let i = start; i < start + length; i++) out[i] = out[i]! ^ 0xff
      return out
    },
  }
}
