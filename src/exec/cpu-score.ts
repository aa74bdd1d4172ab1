/**
 * A quick CPU benchmark, measured when the provider starts and advertised as `hearth.inf.cpu.score`: millions of
 * simple integer and floating-point steps per second on one thread. Requestors compare providers by it; it is not a
 * standard benchmark, only a consistent one across Hearth providers. A requestor's probe (provider-probe.ts) measures
 * its own machine the same way, to compare a provider's probe time with its own; it lives in exec/ so that both sides
 * can use it (requestor/ and provider/ never import each other).
 */
export function measureCpuScore(budgetMs = 25, windows = 5): number {
  // The best of several short windows: a window in which the process was descheduled (a busy machine, a start-up
  // with much else going on) measures the machine's load, not its CPU, and would advertise a score near zero.
  let best = 0
  for (let w = 0; w < windows; w++) best = Math.max(best, stepsPerMs(budgetMs / windows))
  return Math.max(1, Math.round(best / 1000))
}

function stepsPerMs(budgetMs: number): number {
  let steps = 0
  let x = 1
  let y = 0.5
  const started = performance.now()
  let elapsed = 0
  // Short bursts between clock reads, so the clock costs little and the budget is kept.
  while ((elapsed = performance.now() - started) < budgetMs) {
    for (let i = 0; i < 10_000; i++) {
      x = (x * 1_103_515_245 + 12_345) >>> 0
      y = y * 0.999_999 + (x & 0xff) * 1e-9
    }
    steps += 10_000
  }
  // Keep the loop from being optimised away.
  if (y < 0) console.log(x)
  return steps / elapsed
}
