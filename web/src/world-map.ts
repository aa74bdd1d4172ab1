/**
 * An SVG world map without map data: an equirectangular grid of latitude and longitude lines, one marker per
 * provider at its latitude and longitude, and, below the grid, one row per region of the providers whose position
 * is not known. Markers are coloured by latency band.
 */
import { s } from './dom.ts'
import { formatLatency, shorten } from './format.ts'
import type { ProviderLocation } from './types.ts'

export type LatencyBand = 'fast' | 'medium' | 'slow' | 'unknown'

export const latencyBands: ReadonlyArray<{ band: LatencyBand; label: string }> = [
  { band: 'fast', label: 'under 50 ms' },
  { band: 'medium', label: '50–150 ms' },
  { band: 'slow', label: 'over 150 ms' },
  { band: 'unknown', label: 'not measured' },
]

export function latencyBand(ms: number | null): LatencyBand {
  if (ms === null) return 'unknown'
  if (ms < 50) return 'fast'
  return ms < 150 ? 'medium' : 'slow'
}

const width = 360
const mapHeight = 180
const rowHeight = 16
const rowStartX = 96
const markerGap = 11
const perRow = Math.floor((width - rowStartX) / markerGap)

function grid(): SVGElement {
  const lines: SVGElement[] = [s('rect', { class: 'map-ocean', x: 0, y: 0, width, height: mapHeight })]
  for (let lon = -150; lon <= 150; lon += 30) lines.push(s('line', { class: lon === 0 ? 'map-line map-line-main' : 'map-line', x1: lon + 180, y1: 0, x2: lon + 180, y2: mapHeight }))
  for (let lat = -60; lat <= 60; lat += 30) lines.push(s('line', { class: lat === 0 ? 'map-line map-line-main' : 'map-line', x1: 0, y1: 90 - lat, x2: width, y2: 90 - lat }))
  for (const lat of [60, 30, 0, -30, -60]) lines.push(s('text', { class: 'map-label', x: 3, y: 90 - lat - 2 }, `${Math.abs(lat)}°${lat > 0 ? 'N' : lat < 0 ? 'S' : ''}`))
  return s('g', { 'aria-hidden': 'true' }, lines)
}

function marker(provider: ProviderLocation, x: number, y: number): SVGElement {
  const label = `${shorten(provider.provider)}, ${provider.region ?? 'unknown region'}, ${formatLatency(provider.latencyMs)}`
  return s(
    'circle',
    { class: `marker band-${latencyBand(provider.latencyMs)}`, cx: x.toFixed(2), cy: y.toFixed(2), r: 4, 'data-testid': 'provider-marker', 'data-provider': provider.provider, tabindex: 0, role: 'img', 'aria-label': label },
    s('title', null, label),
  )
}

function placed(provider: ProviderLocation): boolean {
  return provider.lat !== null && provider.lon !== null && Math.abs(provider.lat) <= 90 && Math.abs(provider.lon) <= 180
}

/** The rows of providers without a position, one region after another, each wrapping after `perRow` markers. */
function regionRows(providers: readonly ProviderLocation[]): { rows: SVGElement[]; height: number } {
  const byRegion = new Map<string, ProviderLocation[]>()
  for (const provider of providers) {
    const region = provider.region ?? 'unknown region'
    byRegion.set(region, [...(byRegion.get(region) ?? []), provider])
  }
  const rows: SVGElement[] = []
  let y = mapHeight + 20
  for (const [region, members] of [...byRegion].sort(([a], [b]) => a.localeCompare(b))) {
    rows.push(s('text', { class: 'map-region', x: 4, y: y + 3 }, region.length > 16 ? `${region.slice(0, 15)}…` : region))
    members.forEach((provider, i) => {
      if (i > 0 && i % perRow === 0) y += rowHeight
      rows.push(marker(provider, rowStartX + (i % perRow) * markerGap, y))
    })
    y += rowHeight
  }
  return { rows, height: providers.length === 0 ? mapHeight : y - rowHeight / 2 + 4 }
}

/** The map of `providers`. */
export function worldMap(providers: readonly ProviderLocation[]): SVGSVGElement {
  const located = providers.filter(placed)
  const unplaced = providers.filter((provider) => !placed(provider))
  const { rows, height } = regionRows(unplaced)
  const caption = `${located.length} of ${providers.length} providers placed by position; ${unplaced.length} listed by region`
  return s(
    'svg',
    { class: 'world-map', viewBox: `0 0 ${width} ${height}`, role: 'group', 'aria-label': `Providers on a world map: ${caption}` },
    s('title', null, caption),
    grid(),
    unplaced.length === 0 ? null : s('text', { class: 'map-label', x: 4, y: mapHeight + 8 }, 'Position unknown, by region:'),
    located.map((provider) => marker(provider, (provider.lon ?? 0) + 180, 90 - (provider.lat ?? 0))),
    rows,
  )
}
