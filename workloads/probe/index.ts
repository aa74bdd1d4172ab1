// probe: a fixed amount of single-threaded integer and floating-point work, for checking what a provider offers.
//   probe ROUNDS     runs ROUNDS rounds of 100,000 steps and prints "probe ROUNDS CHECKSUM"
// The checksum depends on every step, so the work cannot be skipped, and the same ROUNDS give the same line on every
// machine. Exit 2 on bad arguments.

import { exit, printLine, readArgs } from "./wasi"

export function _start(): void {
  const args = readArgs()
  const rounds = args.length == 2 ? I32.parseInt(args[1]) : -1
  if (rounds < 1 || rounds > 1000000) {
    printLine(2, "probe: expected ROUNDS, a whole number from 1 to 1000000")
    printLine(2, "usage: probe ROUNDS")
    exit(2)
    return
  }
  let x: u32 = 1
  let y: f64 = 0.5
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < 100000; i++) {
      x = x * 1103515245 + 12345
      y = y * 0.999999 + <f64>(x & 0xff) * 1e-9
    }
  }
  // y's bits are the same on every IEEE 754 machine: the sum is an exact function of the steps.
  printLine(1, "probe " + rounds.toString() + " " + x.toString() + " " + reinterpret<u64>(y).toString())
}
