/**
 * An SVG line chart of cumulative amounts over time: labelled axes, one line per series, a dot at each point when
 * there are few. No points draws nothing (the caller shows an empty state); one point is drawn as dots on a span
 * of a minute around it.
 */
import { s } from './dom.ts'
import { formatClock, formatHttNumber } from './format.ts'

export interface Series {
  name: string
  className: string
  values: readonly number[]
}

const width = 640
const height = 260
const pad = { left: 84, right: 16, top: 14, bottom: 34 }
const plotWidth = width - pad.left - pad.right
const plotHeight = height - pad.top - pad.bottom

/** A rounded top for the axis: 1, 2 or 5 times a power of ten, at least `max`. */
function niceMax(max: number): number {
  if (max <= 0) return 1
  const power = 10 ** Math.floor(Math.log10(max))
  return ([1, 2, 5, 10].map((step) => step * power).find((top) => top >= max) ?? 10 * power)
}

function timeSpan(times: readonly number[]): [number, number] {
  const first = Math.min(...times)
  const last = Math.max(...times)
  return last - first < 60_000 ? [first - 30_000, last + 30_000] : [first, last]
}

function axes(top: number, from: number, to: number): SVGElement {
  const y = (value: number): number => pad.top + plotHeight - (value / top) * plotHeight
  const yTicks = [0, top / 2, top].map((value) => [
    s('line', { class: 'chart-grid', x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value) }),
    s('text', { class: 'chart-tick', x: pad.left - 6, y: y(value) + 4, 'text-anchor': 'end' }, formatHttNumber(value)),
  ])
  const xTicks = [0, 0.5, 1].map((f) => {
    const x = pad.left + f * plotWidth
    return s('text', { class: 'chart-tick', x, y: height - pad.bottom + 18, 'text-anchor': f === 0 ? 'start' : f === 1 ? 'end' : 'middle' }, formatClock(from + f * (to - from)))
  })
  return s(
    'g',
    { 'aria-hidden': 'true' },
    yTicks,
    xTicks,
    s('line', { class: 'chart-axis', x1: pad.left, x2: pad.left, y1: pad.top, y2: pad.top + plotHeight }),
    s('line', { class: 'chart-axis', x1: pad.left, x2: width - pad.right, y1: pad.top + plotHeight, y2: pad.top + plotHeight }),
    s('text', { class: 'chart-axis-label', x: pad.left + plotWidth / 2, y: height - 2, 'text-anchor': 'middle' }, 'time'),
  )
}

/** The chart of `series` over `times` (milliseconds; each series has one value per time). */
export function lineChart(label: string, times: readonly number[], series: readonly Series[]): SVGSVGElement {
  const [from, to] = timeSpan(times)
  const top = niceMax(Math.max(0, ...series.flatMap((line) => line.values)))
  const x = (ms: number): number => pad.left + ((ms - from) / (to - from)) * plotWidth
  const y = (value: number): number => pad.top + plotHeight - (value / top) * plotHeight
  const lines = series.map((line) => {
    const points = line.values.map((value, i) => `${x(times[i] ?? from).toFixed(1)},${y(value).toFixed(1)}`)
    return s(
      'g',
      { class: line.className },
      points.length > 1 ? s('polyline', { class: 'chart-line', points: points.join(' ') }) : null,
      times.length <= 40 ? line.values.map((value, i) => s('circle', { class: 'chart-dot', cx: x(times[i] ?? from).toFixed(1), cy: y(value).toFixed(1), r: 3 })) : null,
    )
  })
  return s('svg', { class: 'chart', viewBox: `0 0 ${width} ${height}`, role: 'img', 'aria-label': label }, s('title', null, label), axes(top, from, to), lines)
}
