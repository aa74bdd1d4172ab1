// softmax: trains a classifier on a CSV data set and reports its k-fold cross-validated accuracy.
//   softmax --data /in/iris.csv [--out /out/metric.json] [--lr 0.1] [--epochs 100] [--l2 0] [--hidden 0] [--folds 5] [--seed 1]
// The CSV holds numeric features and a class label in the last column (a header line is skipped). --hidden 0 trains
// softmax regression; --hidden H a network with one tanh layer of H units. Training is full-batch gradient descent on
// the cross-entropy, features standardized by the training folds' statistics. Everything random (the fold assignment,
// the initial weights) comes from --seed, so a setting gives the same bytes on every machine. Prints, and writes to
// --out, one JSON object: {"accuracy":…,"logLoss":…,…}. Exit 2 on bad arguments, 1 on unreadable data.

import { exit, lastErrno, printLine, readArgs, readFile, writeFile } from "./wasi"

const USAGE = "usage: softmax --data PATH [--out PATH] [--lr F] [--epochs N] [--l2 F] [--hidden N] [--folds K] [--seed S]"

function fail(code: u32, message: string): void {
  printLine(2, "softmax: " + message)
  if (code == 2) printLine(2, USAGE)
  exit(code)
}

/** xorshift32: small, and the same sequence everywhere. */
let rngState: u32 = 1
function seedRng(seed: u32): void {
  rngState = seed == 0 ? 0x9e3779b9 : seed
  for (let i = 0; i < 8; i++) nextU32()
}
function nextU32(): u32 {
  let x = rngState
  x ^= x << 13
  x ^= x >> 17
  x ^= x << 5
  rngState = x
  return x
}
/** Uniform in [0, 1). */
function nextUnit(): f64 {
  return <f64>(nextU32() >> 8) / 16777216.0
}

function isNumber(text: string): bool {
  return text.length > 0 && !isNaN(parseFloat(text))
}

// The data set, filled by load(): rows of `features` numbers, and a class id per row.
let features: i32 = 0
let classes: i32 = 0
const xs = new Array<f64>()
const labels = new Array<i32>()

/** Reads the CSV; returns an error message, or "" when it is good. */
function load(data: Uint8Array): string {
  const text = String.UTF8.decodeUnsafe(data.dataStart, data.length)
  const lines = text.split("\n")
  const names = new Array<string>()
  for (let l = 0; l < lines.length; l++) {
    let line = lines[l]
    if (line.endsWith("\r")) line = line.substring(0, line.length - 1)
    if (line.trim().length == 0) continue
    const fields = line.split(",")
    if (fields.length < 2) return "line " + (l + 1).toString() + ": expected features and a label"
    // A header line: its first field is not a number.
    if (labels.length == 0 && features == 0 && !isNumber(fields[0].trim())) continue
    if (features == 0) features = fields.length - 1
    if (fields.length - 1 != features) return "line " + (l + 1).toString() + ": expected " + (features + 1).toString() + " fields"
    for (let f = 0; f < features; f++) {
      const value = parseFloat(fields[f].trim())
      if (isNaN(value) || !isFinite(value)) return "line " + (l + 1).toString() + ": '" + fields[f] + "' is not a number"
      xs.push(value)
    }
    const name = fields[features].trim()
    let id = names.indexOf(name)
    if (id < 0) {
      id = names.length
      names.push(name)
    }
    labels.push(id)
  }
  classes = names.length
  if (labels.length < 2 || classes < 2) return "expected at least two rows and two classes"
  return ""
}

/** A fold's model: weights with the bias last in each row. */
class Model {
  w1: Float64Array // hidden x (features + 1), empty without a hidden layer
  w2: Float64Array // classes x (inputs + 1)
  inputs: i32
  constructor(public hidden: i32) {
    const inputs = hidden > 0 ? hidden : features
    this.inputs = inputs
    this.w1 = new Float64Array(hidden > 0 ? hidden * (features + 1) : 0)
    this.w2 = new Float64Array(classes * (inputs + 1))
    // Softmax regression starts at zero (its loss is convex); a hidden layer needs symmetry broken.
    if (hidden > 0) {
      const s1 = 1.0 / Math.sqrt(<f64>features)
      for (let i = 0; i < this.w1.length; i++) this.w1[i] = (nextUnit() * 2 - 1) * s1
      const s2 = 1.0 / Math.sqrt(<f64>hidden)
      for (let i = 0; i < this.w2.length; i++) this.w2[i] = (nextUnit() * 2 - 1) * s2
    }
  }
}

// Scratch for one row.
let x = new Float64Array(0)
let h = new Float64Array(0)
let p = new Float64Array(0)

/** Forward pass for the standardized row in `x`: hidden activations into `h`, class probabilities into `p`. */
function forward(model: Model): void {
  const n = features + 1
  let input = x
  if (model.hidden > 0) {
    for (let j = 0; j < model.hidden; j++) {
      let sum = model.w1[j * n + features]
      for (let f = 0; f < features; f++) sum += model.w1[j * n + f] * x[f]
      h[j] = Math.tanh(sum)
    }
    input = h
  }
  const m = model.inputs + 1
  let max = -Infinity
  for (let c = 0; c < classes; c++) {
    let sum = model.w2[c * m + model.inputs]
    for (let i = 0; i < model.inputs; i++) sum += model.w2[c * m + i] * input[i]
    p[c] = sum
    if (sum > max) max = sum
  }
  let total = 0.0
  for (let c = 0; c < classes; c++) {
    p[c] = Math.exp(p[c] - max)
    total += p[c]
  }
  for (let c = 0; c < classes; c++) p[c] /= total
}

export function _start(): void {
  const args = readArgs()
  let dataPath = ""
  let out = ""
  let lr = 0.1
  let l2 = 0.0
  let epochs: i32 = 100
  let hidden: i32 = 0
  let folds: i32 = 5
  let seed: i32 = 1
  for (let i = 1; i < args.length; i += 2) {
    const name = args[i]
    if (i + 1 >= args.length) return fail(2, "missing a value for " + name)
    const value = args[i + 1]
    if (name == "--data") dataPath = value
    else if (name == "--out") out = value
    else if (name == "--lr" || name == "--l2") {
      const number = parseFloat(value)
      if (isNaN(number) || !isFinite(number) || number < 0) return fail(2, name + " must be a non-negative number, got '" + value + "'")
      if (name == "--lr") lr = number
      else l2 = number
    } else if (name == "--epochs" || name == "--hidden" || name == "--folds" || name == "--seed") {
      const number = I32.parseInt(value, 10)
      if (number.toString() != value || number < 0 || number > 1000000) return fail(2, name + " must be a whole number from 0 to 1000000, got '" + value + "'")
      if (name == "--epochs") epochs = number
      else if (name == "--hidden") hidden = number
      else if (name == "--folds") folds = number
      else seed = number
    } else return fail(2, "unknown option " + name)
  }
  if (dataPath.length == 0) return fail(2, "--data is required")
  if (hidden > 1024) return fail(2, "--hidden may be at most 1024")
  const data = readFile(dataPath)
  if (data == null) return fail(1, "cannot read " + dataPath + " (WASI errno " + lastErrno.toString() + ")")
  const problem = load(data)
  if (problem.length > 0) return fail(1, dataPath + ": " + problem)
  const rows = labels.length
  if (folds < 2 || folds > rows) return fail(2, "--folds must be from 2 to the number of rows (" + rows.toString() + ")")

  // Folds: a seeded shuffle of the rows, dealt round-robin.
  seedRng(<u32>seed)
  const order = new Array<i32>(rows)
  for (let i = 0; i < rows; i++) order[i] = i
  for (let i = rows - 1; i > 0; i--) {
    const j = <i32>(nextU32() % <u32>(i + 1))
    const t = order[i]
    order[i] = order[j]
    order[j] = t
  }
  const foldOf = new Array<i32>(rows)
  for (let i = 0; i < rows; i++) foldOf[order[i]] = i % folds

  x = new Float64Array(features)
  h = new Float64Array(hidden)
  p = new Float64Array(classes)
  const mean = new Float64Array(features)
  const scale = new Float64Array(features)
  let correct = 0
  let logLoss = 0.0
  for (let fold = 0; fold < folds; fold++) {
    // Standardize with the training rows' mean and deviation only.
    let count = 0
    for (let f = 0; f < features; f++) {
      mean[f] = 0
      scale[f] = 0
    }
    for (let r = 0; r < rows; r++) {
      if (foldOf[r] == fold) continue
      count++
      for (let f = 0; f < features; f++) mean[f] += xs[r * features + f]
    }
    for (let f = 0; f < features; f++) mean[f] /= <f64>count
    for (let r = 0; r < rows; r++) {
      if (foldOf[r] == fold) continue
      for (let f = 0; f < features; f++) {
        const d = xs[r * features + f] - mean[f]
        scale[f] += d * d
      }
    }
    for (let f = 0; f < features; f++) {
      const sd = Math.sqrt(scale[f] / <f64>count)
      scale[f] = sd > 0 ? 1.0 / sd : 1.0
    }

    const model = new Model(hidden)
    const n = features + 1
    const m = model.inputs + 1
    const g1 = new Float64Array(model.w1.length)
    const g2 = new Float64Array(model.w2.length)
    const dh = new Float64Array(hidden)
    for (let epoch = 0; epoch < epochs; epoch++) {
      g1.fill(0)
      g2.fill(0)
      for (let r = 0; r < rows; r++) {
        if (foldOf[r] == fold) continue
        for (let f = 0; f < features; f++) x[f] = (xs[r * features + f] - mean[f]) * scale[f]
        forward(model)
        const input = hidden > 0 ? h : x
        for (let j = 0; j < hidden; j++) dh[j] = 0
        for (let c = 0; c < classes; c++) {
          // d(cross-entropy)/d(logit c) = p_c - [c is the label]
          const d = p[c] - (c == labels[r] ? 1.0 : 0.0)
          for (let i = 0; i < model.inputs; i++) {
            g2[c * m + i] += d * input[i]
            if (hidden > 0) dh[i] += d * model.w2[c * m + i]
          }
          g2[c * m + model.inputs] += d
        }
        for (let j = 0; j < hidden; j++) {
          const d = dh[j] * (1 - h[j] * h[j])
          for (let f = 0; f < features; f++) g1[j * n + f] += d * x[f]
          g1[j * n + features] += d
        }
      }
      const step = lr / <f64>count
      for (let i = 0; i < model.w2.length; i++) {
        const decay = (i % m) == model.inputs ? 0.0 : l2 * model.w2[i]
        model.w2[i] -= step * g2[i] + lr * decay
      }
      for (let i = 0; i < model.w1.length; i++) {
        const decay = (i % n) == features ? 0.0 : l2 * model.w1[i]
        model.w1[i] -= step * g1[i] + lr * decay
      }
    }

    for (let r = 0; r < rows; r++) {
      if (foldOf[r] != fold) continue
      for (let f = 0; f < features; f++) x[f] = (xs[r * features + f] - mean[f]) * scale[f]
      forward(model)
      let best = 0
      for (let c = 1; c < classes; c++) if (p[c] > p[best]) best = c
      if (best == labels[r]) correct++
      logLoss -= Math.log(Math.max(p[labels[r]], 1e-15))
    }
  }

  const accuracy = <f64>correct / <f64>rows
  logLoss /= <f64>rows
  const loss = isFinite(logLoss) ? logLoss.toString() : "null"
  const json = "{\"accuracy\":" + accuracy.toString() + ",\"logLoss\":" + loss + ",\"correct\":" + correct.toString() +
    ",\"rows\":" + rows.toString() + ",\"folds\":" + folds.toString() + ",\"lr\":" + lr.toString() + ",\"epochs\":" +
    epochs.toString() + ",\"l2\":" + l2.toString() + ",\"hidden\":" + hidden.toString() + "}"
  printLine(1, json)
  if (out.length > 0) {
    const bytes = String.UTF8.encode(json + "\n")
    const errno = writeFile(out, changetype<usize>(bytes), bytes.byteLength)
    if (errno != 0) return fail(1, "cannot write " + out + " (WASI errno " + errno.toString() + ")")
  }
}
