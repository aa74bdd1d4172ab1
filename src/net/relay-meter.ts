/**
 * What a relay carried: libp2p hands every protocol stream to its metrics component, so a relay's host gets this one,
 * which counts the bytes arriving on circuit relay streams (the hop stream from the dialling peer, the stop stream
 * from the peer dialled: each relayed byte arrives at the relay once). Everything else libp2p would record is dropped.
 */
import type { Metrics, Stream } from '@libp2p/interface'

const relayProtocols = new Set(['/libp2p/circuit/relay/0.2.0/hop', '/libp2p/circuit/relay/0.2.0/stop'])

export interface RelayMeter {
  metrics: Metrics
  /** Bytes relayed between peers since start, both ways together (reservation messages too, a few hundred bytes). */
  relayedBytes(): number
}

export function createRelayMeter(): RelayMeter {
  let relayed = 0
  const ignore = (): void => {}
  // One object serves as every kind of metric libp2p registers: all of their methods do nothing.
  const metric = { update: ignore, increment: ignore, decrement: ignore, reset: ignore, observe: ignore, timer: () => ignore }
  const register = ((): typeof metric => metric) as unknown as Metrics['registerMetric']
  const metrics: Metrics = {
    trackMultiaddrConnection: ignore,
    trackProtocolStream(stream: Stream) {
      if (!relayProtocols.has(stream.protocol)) return
      stream.addEventListener('message', (event) => {
        relayed += event.data.byteLength
      })
    },
    registerMetric: register,
    registerMetricGroup: register as unknown as Metrics['registerMetricGroup'],
    registerCounter: register as unknown as Metrics['registerCounter'],
    registerCounterGroup: register as unknown as Metrics['registerCounterGroup'],
    registerHistogram: register as unknown as Metrics['registerHistogram'],
    registerHistogramGroup: register as unknown as Metrics['registerHistogramGroup'],
    registerSummary: register as unknown as Metrics['registerSummary'],
    registerSummaryGroup: register as unknown as Metrics['registerSummaryGroup'],
    traceFunction: ((_name: string, fn: unknown) => fn) as Metrics['traceFunction'],
    createTrace: () => undefined,
  }
  return { metrics, relayedBytes: () => relayed }
}
