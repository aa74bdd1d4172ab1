/** What `hearth service` and `hearth requestor status` print for a person: short tables of services and replicas. */
import type { RequestorNodeStatus } from '../requestor/requestor-api.ts'
import type { ServiceStatus } from '../requestor/services.ts'

/** Columns padded to their widest cell. */
export function table(header: string[], rows: string[][]): string {
  const widths = header.map((title, i) => Math.max(title.length, ...rows.map((row) => (row[i] ?? '').length)))
  const line = (cells: string[]): string => cells.map((cell, i) => cell.padEnd(widths[i]!)).join('  ').trimEnd()
  return [line(header), ...rows.map(line)].join('\n')
}

const short = (address: string): string => (address.length > 14 ? `${address.slice(0, 8)}…${address.slice(-4)}` : address)

export function formatService(status: ServiceStatus): string {
  const serving = status.replicas.filter((replica) => replica.inRotation).length
  const rows = status.replicas.map((replica) => [replica.id, replica.region ?? 'any', short(replica.provider), replica.state, replica.version, String(replica.restarts)])
  const errors = status.replicas.filter((replica) => replica.lastError !== undefined && replica.state !== 'serving').map((replica) => `  ${replica.id}: ${replica.lastError}`)
  return [
    `Service ${status.name} version ${status.version}: ${serving} of ${status.wanted} replicas serving`,
    table(['REPLICA', 'REGION', 'PROVIDER', 'STATE', 'VERSION', 'RESTARTS'], rows),
    ...errors,
    '',
  ].join('\n')
}

export function formatServiceList(services: ServiceStatus[]): string {
  if (services.length === 0) return 'No services.\n'
  const rows = services.map((service) => [service.name, service.version, `${service.replicas.filter((replica) => replica.inRotation).length}/${service.wanted}`])
  return `${table(['NAME', 'VERSION', 'SERVING'], rows)}\n`
}

export function formatNodeStatus(status: RequestorNodeStatus): string {
  return [
    `Requestor node ${status.address} (pid ${status.pid}, peer ${status.peerId})`,
    `  addresses   ${status.multiaddrs.join('\n              ')}`,
    `  offers      ${status.offers} in its book`,
    ...status.gateways.map((gateway) => `  gateway     ${gateway.service} at ${gateway.url}`),
    `  services    ${status.services.length === 0 ? 'none' : status.services.map((service) => service.name).join(', ')}`,
    '',
  ].join('\n')
}

export function formatRemoved(name: string, paid: { agreementId: string; paidWei: string }[]): string {
  const rows = paid.map((entry) => [entry.agreementId, entry.paidWei])
  const total = paid.reduce((sum, entry) => sum + BigInt(entry.paidWei), 0n)
  return [`Removed ${name}; its agreements settled, ${total} wei paid in all:`, table(['AGREEMENT', 'PAID (WEI)'], rows), ''].join('\n')
}
