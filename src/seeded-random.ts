/**
 * mulberry32: a small, fast, seedable generator of numbers in [0, 1). Its statistical quality is plenty for what it
 * is used for here (which tasks a bad provider corrupts, which results are checked, test and bench data), and a seed
 * makes those choices the same on every run and machine. Not for anything secret.
 */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
