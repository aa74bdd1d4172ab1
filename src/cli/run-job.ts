/**
 * `hearth run JOBFILE`: the job file is checked whole first (exit code 2, nothing started; jobs/run-job-file.ts), then
 * a local network started for it (devnet/), or a running network joined, runs it; every task's outputs, stdout and
 * stderr land under DIR/<task index>/, and the report adds what the chain says of the money.
 */
import { existsSync } from 'node:fs'
import { resolve } from 'node:path'
import { defaultDockerSocket } from '../exec/docker-runtime.ts'
import { startDevnet } from '../devnet/devnet.ts'
import { settlementReport, snapshotDevnet, type EarlierEscrow, type SettlementReport, type SettlementSource } from '../devnet/report.ts'
import { prepareJobFile, runPreparedJob, type JobFileRun } from '../jobs/run-job-file.ts'
import type { Agreement } from '../market/agreement.ts'
import type { JobEventListener } from '../requestor/events.ts'
import type { JobOutcome, JobSpec, Requestor } from '../requestor/requestor.ts'
import { startRequestorNode, type RequestorNodeInit } from '../requestor/requestor-node.ts'
import type { Store } from '../store/store.ts'

export interface RunJobInit {
  jobFile: string
  outDir: string
  providers: number
  /** Native programs the local providers offer (name → absolute path); default: known renderers installed here. */
  nativePrograms?: Record<string, string>
  /** The Docker Engine API socket the local providers use; default: DOCKER_HOST or the usual socket paths. */
  dockerSocket?: string
  onEvent?: JobEventListener
  /** Continue an earlier run of the same job file (its id), reusing its accepted results. */
  resume?: string
  /** The first K local providers return wrong results half the time (see DevnetInit.badProviders). */
  badProviders?: number
  /** Join this network instead of starting a local one: the requestor keeps its key and database in its data dir. */
  network?: RequestorNodeInit
}

export interface RunReport extends SettlementReport, JobFileRun {
  output: string
  wallMs: number
}

/** Programs a local provider offers by default when they are installed: renderers, as Golem's providers offer. */
const knownPrograms: Record<string, string> = { povray: '/usr/bin/povray', blender: '/usr/bin/blender' }

function installedPrograms(): Record<string, string> {
  return Object.fromEntries(Object.entries(knownPrograms).filter(([, path]) => existsSync(path)))
}

export async function runJobFile(init: RunJobInit): Promise<RunReport> {
  const started = performance.now()
  // Everything about the job is checked before any node starts or any money moves.
  const prepared = await prepareJobFile(init)
  const emit = init.onEvent ?? (() => undefined)
  const network = await joinOrStart(init, prepared.spec, emit)
  try {
    const before = await snapshotDevnet(network.source)
    const outDir = resolve(init.outDir)
    const { run, outcome } = await runPreparedJob(network.requestor, prepared, { outDir, emit })
    const settlement = await settlementReport(network.source, before, outcome, earlierEscrows(network.store, run.jobId, outcome))
    return { ...run, ...settlement, output: outDir, wallMs: Math.round(performance.now() - started) }
  } finally {
    await network.stop()
  }
}

/**
 * A resumed job's agreements from its earlier runs, which this run settles: the chain audit covers their escrows too,
 * or the tokens they move now would be unexplained. The requestor's records say only which escrows and where they
 * opened; their figures come from the chain.
 */
function earlierEscrows(store: Store, jobId: string, outcome: JobOutcome): EarlierEscrow[] {
  const current = new Set(outcome.agreements.map((a) => a.agreementId.toLowerCase()))
  return store.agreements.list().flatMap((record) => {
    const terms = (record.document as Agreement | undefined)?.terms
    if (record.role !== 'requestor' || terms === undefined || !terms.jobName.endsWith(`(${jobId})`) || current.has(record.id.toLowerCase())) return []
    const escrow = store.escrows.get(record.id)
    return escrow === undefined ? [] : [{ agreementId: record.id, openTx: escrow.openTx }]
  })
}

/** The requestor that runs the job: of a local network started for it, or of this node joining one that runs. */
async function joinOrStart(init: RunJobInit, spec: JobSpec, emit: JobEventListener): Promise<{ requestor: Requestor; store: Store; source: SettlementSource; stop(): Promise<void> }> {
  if (init.network !== undefined) {
    emit({ type: 'phase', message: `joining the network through ${init.network.bootstrap.length} peers` })
    const node = await startRequestorNode(init.network)
    const source: SettlementSource = {
      requestor: { identity: node.identity, payment: node.payment },
      providers: [],
      transactions: () => node.payment.client.ledger,
      connections: () => node.host.connections(),
    }
    return { requestor: node.requestor, store: node.store, source, stop: () => node.stop() }
  }
  emit({ type: 'phase', message: `starting a local network: embedded chain, ${spec.providers} providers, 1 requestor` })
  const socket = init.dockerSocket ?? defaultDockerSocket()
  const dockerSocket = existsSync(socket) ? socket : undefined
  const devnet = await startDevnet({
    providers: spec.providers,
    // The embedded network offers what this machine can run: renderers found here, and a Docker-compatible engine.
    nativePrograms: init.nativePrograms ?? installedPrograms(),
    ...(dockerSocket === undefined ? {} : { dockerSocket }),
    ...(init.badProviders === undefined ? {} : { badProviders: init.badProviders }),
  })
  return { requestor: devnet.requestor.agent, store: devnet.requestor.store, source: devnet, stop: () => devnet.stop() }
}
