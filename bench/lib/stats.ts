/** What the benches share: the median of several runs, a line printer that stays quiet under --json, and rounding. */

export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 === 1 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}

/** Prints a line unless the bench reports JSON. */
export function lineLogger(json: boolean | undefined): (line: string) => void {
  return (line) => {
    if (json !== true) console.log(line)
  }
}

export function round(x: number): number {
  return Number(x.toFixed(2))
}
