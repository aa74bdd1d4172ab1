/**
 * Prometheus's text exposition format (version 0.0.4), for a node's `GET /metrics`: one HELP and TYPE line per
 * metric, then its samples with their labels. Amounts of wei are exposed in HTT (1e18 wei) as floats, as Prometheus
 * holds only float64 values.
 */
export interface MetricSample {
  /** `hearth_…`, snake case; counters end in `_total`. */
  name: string
  help: string
  type: 'counter' | 'gauge'
  value: number
  labels?: Record<string, string>
}

function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/\n/g, '\\n').replace(/"/g, '\\"')
}

function formatValue(value: number): string {
  if (Number.isNaN(value)) return 'NaN'
  if (value === Infinity) return '+Inf'
  if (value === -Infinity) return '-Inf'
  return String(value)
}

/** Wei as HTT, for a metric (float64: exact to about 1e-9 HTT for amounts under a million HTT). */
export function weiToHtt(wei: bigint | string): number {
  const value = typeof wei === 'string' ? BigInt(wei) : wei
  return Number(value / 10n ** 9n) / 1e9
}

export function formatPrometheus(samples: readonly MetricSample[]): string {
  const byName = new Map<string, MetricSample[]>()
  for (const sample of samples) {
    if (!/^[a-zA-Z_:][a-zA-Z0-9_:]*$/.test(sample.name)) throw new Error(`not a metric name: ${sample.name}`)
    byName.set(sample.name, [...(byName.get(sample.name) ?? []), sample])
  }
  const lines: string[] = []
  for (const [name, group] of byName) {
    lines.push(`# HELP ${name} ${group[0]!.help.replace(/\\/g, '\\\\').replace(/\n/g, '\\n')}`, `# TYPE ${name} ${group[0]!.type}`)
    for (const sample of group) {
      const labels = Object.entries(sample.labels ?? {})
      const labelText = labels.length === 0 ? '' : `{${labels.map(([key, value]) => `${key}="${escapeLabel(value)}"`).join(',')}}`
      lines.push(`${name}${labelText} ${formatValue(sample.value)}`)
    }
  }
  return `${lines.join('\n')}\n`
}
