/**
 * `hearth provider init|start|status|earnings|stop`: lend this machine. `init` writes a commented config file (from
 * flags, or by asking on a terminal); `start` runs the provider in the foreground until SIGINT/SIGTERM or
 * `hearth provider stop`; `status` and `stop` reach it through its local API (a unix socket with a key, both in the
 * data directory); `earnings` reads its database, running or not.
 *
 * `start` prints one JSON line on stdout once the node is up, for scripts:
 *   {"event":"ready","peerId":"…","address":"0x…","multiaddrs":["/ip4/…/tcp/…/p2p/…"],"pid":123,"dataDir":"…","lending":true}
 * and one more when it has stopped: {"event":"stopped","handedBack":0,"claimed":[…]}. Everything else goes to stderr.
 */
import { existsSync } from 'node:fs'
import { mkdir, readFile, writeFile } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { createInterface } from 'node:readline/promises'
import { Option, type Command } from 'commander'
import { HearthError } from '../errors.ts'
import { openStore } from '../store/store.ts'
import {
  checkShare,
  defaultShare,
  machineFacts,
  parseConfigText,
  pricePresets,
  pricingFromConfig,
  pricingToConfig,
  renderConfigFile,
  resolveProviderConfig,
  settings,
  type ProviderConfig,
} from '../provider/config.ts'
import { readEarnings, type AgreementEarnings, type EarningsReport } from '../provider/earnings.ts'
import { callLocalApi, readApiInfo } from '../provider/local-api.ts'
import { startMemoryTrim } from '../provider/node-memory.ts'
import { breakEvenPrices, checkPricing, formatWei, suggestPricing, weiToFiat } from '../provider/profitability.ts'
import { ownerCosts, startProviderNode, type ProviderStatus } from '../provider/provider-node.ts'
import type { CommandIo } from './chain-command.ts'
import { untilSignal } from './options.ts'

export const configFileName = 'provider.jsonc'
const defaultDataDir = '.hearth-provider'

type Flags = Record<string, unknown> & { dataDir: string; config?: string; json?: boolean }

function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)
}

/** The settings' flags (`--threads`, `--memory-gib`, …), shared by init and start. */
function addSettingFlags(command: Command): Command {
  for (const setting of settings) {
    const flag = kebab(setting.flag)
    if (setting.kind === 'bool') {
      command.addOption(new Option(`--${flag}`, setting.description))
      command.addOption(new Option(`--no-${flag}`, `do not: ${setting.description}`))
    } else if (setting.kind === 'list') {
      command.addOption(new Option(`--${flag} <value...>`, setting.description))
    } else {
      command.addOption(new Option(`--${flag} <value>`, setting.description))
    }
  }
  return command
}

function configPath(flags: Flags): string {
  return flags.config ?? join(flags.dataDir, configFileName)
}

/** A bare start needs no file: half the machine, priced at the wasi per-task preset. */
function fallbackFile(dataDir: string): Record<string, unknown> {
  return { resources: defaultShare(machineFacts(existsSync(dataDir) ? dataDir : '.')), pricing: pricePresets.wasi.perTask }
}

async function loadConfig(flags: Flags, env: NodeJS.ProcessEnv): Promise<ProviderConfig> {
  const path = configPath(flags)
  const text = await readFile(path, 'utf8').catch(() => undefined)
  if (text === undefined && flags.config !== undefined) {
    throw new HearthError('HEARTH_ERR_CONFIG_INVALID', `cannot read the provider config file ${path}`, { hint: 'write one with hearth provider init' })
  }
  const file = text === undefined ? fallbackFile(flags.dataDir) : parseConfigText(text, path)
  return resolveProviderConfig({ file, env, flags })
}

/** Asks for what the flags did not give, on a terminal. */
async function askOwner(flags: Flags, proposed: Record<string, unknown>, io: CommandIo): Promise<void> {
  const rl = createInterface({ input: process.stdin, output: io.stderr as NodeJS.WritableStream })
  try {
    const ask = async (question: string, fallback: string): Promise<string> => {
      const answer = (await rl.question(`${question} [${fallback}]: `)).trim()
      return answer === '' ? fallback : answer
    }
    const resources = proposed['resources'] as { threads: number; memoryGib: number; diskGib: number }
    if (flags['threads'] === undefined) flags['threads'] = await ask('CPU threads to lend', String(resources.threads))
    if (flags['memoryGib'] === undefined) flags['memoryGib'] = await ask('memory to lend, GiB', String(resources.memoryGib))
    if (flags['diskGib'] === undefined) flags['diskGib'] = await ask('disk to lend, GiB', String(resources.diskGib))
    if (flags['deployment'] === undefined) {
      const deployment = await ask('deployment file of the chain to be paid on (hearth chain --deployment-out)', 'deployment.json')
      flags['deployment'] = deployment
    }
    if (flags['bootstrap'] === undefined) {
      const bootstrap = await ask('peers to join through (multiaddrs, comma-separated; empty for none)', '')
      if (bootstrap !== '') flags['bootstrap'] = bootstrap.split(',').map((s) => s.trim())
    }
    if (flags['pricingModel'] === undefined) flags['pricingModel'] = await ask('pricing model: per-task or linear', 'per-task')
    if (flags['electricityPerKwh'] === undefined) flags['electricityPerKwh'] = await ask('electricity price per kWh in your currency', '0.3')
    if (flags['tokenRate'] === undefined) flags['tokenRate'] = await ask('price of one HTT in your currency', '1')
    if (flags['hours'] === undefined) {
      const hours = await ask('lending hours like 22:00-07:00 (empty: any hour while idle)', '')
      if (hours !== '') flags['hours'] = hours.split(',').map((s) => s.trim())
    }
  } finally {
    rl.close()
  }
}

export interface InitReport {
  configFile: string
  config: ProviderConfig
  breakEven: { perTaskHtt: string; perCpuHourHtt: string }
  warning: string | undefined
}

export async function runProviderInit(flags: Flags & { force?: boolean; preset?: string; suggestPrice?: boolean }, io: CommandIo, env: NodeJS.ProcessEnv = process.env): Promise<InitReport> {
  const path = configPath(flags)
  if (existsSync(path) && flags.force !== true) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${path} exists already`, { hint: 'edit it, or pass --force to write a fresh one' })
  }
  await mkdir(flags.dataDir, { recursive: true, mode: 0o700 })
  const machine = machineFacts(flags.dataDir)
  const preset = flags.preset ?? 'wasi'
  if (!(preset in pricePresets)) throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `provider config --preset: expected wasi, native or docker, got "${preset}"`)
  const presets = pricePresets[preset as keyof typeof pricePresets]
  const interactive = (process.stdin as { isTTY?: boolean }).isTTY === true && flags.json !== true && flags['yes'] !== true
  const proposed: Record<string, unknown> = { resources: defaultShare(machine), pricing: presets.perTask }
  if (interactive) await askOwner(flags, proposed, io)
  // The model picks its preset; explicit prices (flags, environment) override it.
  const model = (flags['pricingModel'] ?? env['HEARTH_PROVIDER_PRICING_MODEL']) === 'linear' ? 'linear' : 'per-task'
  proposed['pricing'] = model === 'linear' ? presets.linear : presets.perTask
  let config = resolveProviderConfig({ file: proposed, env, flags })
  // The file may be read from another folder later: paths in it are absolute.
  if (config.chain !== undefined) config = { ...config, chain: { ...config.chain, deployment: resolve(config.chain.deployment) } }
  checkShare(config.resources, machine)
  const share = { machineThreads: machine.threads, lentThreads: config.resources.threads }
  if (flags.suggestPrice === true) {
    config = { ...config, pricing: pricingToConfig(suggestPricing(ownerCosts(config), share, config.pricing.model)) }
  }
  const even = breakEvenPrices(ownerCosts(config), share)
  const breakEven = {
    perTaskHtt: formatWei(BigInt(even.perTask.perTaskWei)),
    perCpuHourHtt: formatWei(BigInt(even.linear.perCpuSecWei) * 3600n),
  }
  const note = `${breakEven.perTaskHtt} HTT per ${config.costs.expectedTaskCpuSec} s task, or ${breakEven.perCpuHourHtt} HTT per CPU-hour (${even.cpuHour.total.toFixed(4)} ${config.costs.currency})`
  await writeFile(path, renderConfigFile(config, { machine, breakEven: note }), { mode: 0o600 })
  const warning = checkPricing(pricingFromConfig(config.pricing), ownerCosts(config), share).warning
  const report: InitReport = { configFile: path, config, breakEven, warning }
  if (flags.json === true) {
    io.stdout.write(`${JSON.stringify(report)}\n`)
  } else {
    io.stdout.write(
      [
        `Wrote ${path}`,
        `  lending     ${config.resources.threads} threads, ${config.resources.memoryGib} GiB memory, ${config.resources.diskGib} GiB disk (of ${machine.threads} threads, ${machine.memoryGib.toFixed(1)} GiB)`,
        `  prices      ${describePricing(config.pricing)}`,
        `  break-even  ${note}`,
        ...(warning === undefined ? [] : [`  WARNING     ${warning}`]),
        `Start it with: hearth provider start --data-dir ${flags.dataDir}`,
        '',
      ].join('\n'),
    )
  }
  return report
}

function describePricing(pricing: ProviderConfig['pricing']): string {
  return pricing.model === 'per-task'
    ? `per task ${pricing.perTaskHtt} HTT`
    : `linear: ${pricing.startHtt} HTT start + ${pricing.perCpuHourHtt} HTT/CPU-hour + ${pricing.perHourHtt} HTT/hour`
}


export async function runProviderStart(flags: Flags, io: CommandIo, options: { env?: NodeJS.ProcessEnv; stopSignal?: AbortSignal } = {}): Promise<void> {
  const config = await loadConfig(flags, options.env ?? process.env)
  const log = (line: string): void => void io.stderr.write(`[provider] ${line}\n`)
  const { dashboardDir } = await import('../api/web-assets.ts')
  const dashboard = dashboardDir()
  const node = await startProviderNode({ dataDir: resolve(flags.dataDir), config, log, ...(dashboard === undefined ? {} : { dashboardDir: dashboard }) })
  const status = node.status()
  io.stdout.write(
    `${JSON.stringify({ event: 'ready', peerId: node.peerId, address: node.address, multiaddrs: node.multiaddrs(), pid: process.pid, dataDir: resolve(flags.dataDir), lending: status.lending.active })}\n`,
  )
  log(`${node.address} lending ${config.resources.threads} threads, ${config.resources.memoryGib} GiB, ${config.resources.diskGib} GiB disk; runtimes ${status.offer.runtimes.join(', ')}${status.offer.unavailable.length === 0 ? '' : ` (not offered: ${status.offer.unavailable.join('; ')})`}`)
  log(`prices ${describePricing(config.pricing)}; CPU score ${status.offer.cpuScore ?? '?'}; ${status.lending.active ? 'taking work' : `paused: ${status.lending.reason}`}`)
  for (const address of node.multiaddrs()) log(`join with --bootstrap ${address}`)
  // This process is the provider's own: it may give back what start-up and each job grew the heap to, once quiet.
  const trim = startMemoryTrim()
  const stopRequested = options.stopSignal === undefined ? new Promise<void>(() => undefined) : new Promise<void>((r) => options.stopSignal!.addEventListener('abort', () => r(), { once: true }))
  await untilSignal(Promise.race([node.stopped, stopRequested]))
  log('stopping: no new work; running tasks may finish, then what is owed is claimed')
  trim.stop()
  const report = await node.stop()
  io.stdout.write(`${JSON.stringify({ event: 'stopped', ...report })}\n`)
}

function describeReachability(reachability: ProviderStatus['network']['reachability']): string {
  const relays = reachability.relays.filter((relay) => relay.reserved).map((relay) => relay.peerId)
  const how = { public: 'public', private: 'private, through relays', unreachable: 'unreachable', local: 'this machine only', unknown: 'not known yet' }[reachability.kind]
  return `${how}: ${reachability.reason}${relays.length === 0 ? '' : ` (slots on ${relays.join(', ')})`}`
}

/** One line per peer: how this node reaches it (direct, or relayed through which relay). */
function connectionLines(connections: ProviderStatus['network']['connections']): string[] {
  if (connections.length === 0) return ['  peers       none connected']
  return connections.map((c, i) => `${i === 0 ? '  peers       ' : '              '}${c.peerId} ${c.kind} (${c.direction}, ${c.remoteAddr})`)
}

export function formatStatus(status: ProviderStatus): string {
  const e = status.earnings
  const p = status.profitability
  return [
    `Provider ${status.address} (pid ${status.pid}, up ${status.uptimeSec} s)`,
    `  lending     ${status.lending.active ? 'yes, taking work' : `paused: ${status.lending.reason}`}`,
    `  offer       ${status.offer.threads} threads, ${status.offer.memoryGib} GiB, ${status.offer.diskGib} GiB disk, CPU score ${status.offer.cpuScore ?? '?'}, ${status.offer.gpus} GPUs`,
    `  runtimes    ${status.offer.runtimes.join(', ')}${status.offer.unavailable.length === 0 ? '' : `  (not offered: ${status.offer.unavailable.join('; ')})`}`,
    `  prices      ${describePricing(status.offer.pricing)}`,
    `  cost        ${formatWei(BigInt(p.costPerCpuHourWei))} HTT per CPU-hour; prices earn ${formatWei(BigInt(p.revenuePerCpuHourWei))} (${(p.coverage * 100).toFixed(0)}% of cost)`,
    `  now         ${status.tasks.tasks} tasks running, ${status.activeAgreements} agreements open; ${status.stats.tasksRun} tasks run, ${status.stats.tasksFailed} failed since start`,
    `  earnings    ${formatWei(BigInt(e.revenueWei))} HTT (claimed ${formatWei(BigInt(e.claimedWei))}${BigInt(e.confirmingWei) > 0n ? `, confirming ${formatWei(BigInt(e.confirmingWei))}` : ''}, unclaimed ${formatWei(BigInt(e.unclaimedWei))})`,
    `  at risk     ${formatWei(BigInt(e.exposureWei))} HTT of work delivered that no voucher covers`,
    ...claimsSummary(e),
    `  reachable   ${describeReachability(status.network.reachability)}`,
    `  addresses   ${status.multiaddrs.join('\n              ')}`,
    ...connectionLines(status.network.connections),
    ...status.warnings.map((w) => `  WARNING     ${w}`),
    // Open agreements, and any whose money is not settled yet: an unpaid exposure, a claim in flight or failed.
    ...agreementLines(status.agreements.filter((a) => a.state === 'approved' || needsAttention(a))),
    '',
  ].join('\n')
}

function claimsSummary(totals: EarningsReport['totals']): string[] {
  const parts = [
    ...(totals.failedClaims > 0 ? [`${totals.failedClaims} FAILED (retried; see below)`] : []),
    ...(totals.confirmingClaims > 0 ? [`${totals.confirmingClaims} waiting for confirmations`] : []),
  ]
  return parts.length === 0 ? [] : [`  claims      ${parts.join(', ')}`]
}

function agreementLines(agreements: AgreementEarnings[]): string[] {
  return agreements.length === 0 ? [] : ['  agreements  open, or with money not settled yet:', ...agreements.flatMap((a) => formatAgreementMoney(a))]
}

function needsAttention(a: AgreementEarnings): boolean {
  return BigInt(a.exposure.unpaidWei) > 0n || a.exposure.runningTasks > 0 || BigInt(a.unclaimedWei) > 0n || (a.claim !== null && a.claim.state !== 'confirmed')
}

function inTime(atMs: number, nowMs: number): string {
  const sec = Math.max(0, Math.round((atMs - nowMs) / 1000))
  return sec === 0 ? 'at the next payment round' : `in ${sec} s`
}

/** One agreement's money: what it earned and claimed, what is at risk, and its claim's state with its retries. */
export function formatAgreementMoney(a: AgreementEarnings, nowMs = Date.now()): string[] {
  const x = a.exposure
  const lines = [
    `  ${a.agreementId.slice(0, 18)}…  ${a.state.padEnd(10)} ${String(a.usage.tasks).padStart(5)} tasks  vouched ${formatWei(BigInt(a.vouchedWei))}  claimed ${formatWei(BigInt(a.claimedWei))}` +
      (BigInt(a.unclaimedWei) > 0n ? `  unclaimed ${formatWei(BigInt(a.unclaimedWei))}` : ''),
    `      unpaid exposure ${formatWei(BigInt(x.unpaidWei))} HTT (${x.unpaidTasks} tasks${x.runningTasks > 0 ? `, ${x.runningTasks} running` : ''}${a.unpaidNotes > 0 ? `, ${a.unpaidNotes} debit notes unanswered` : ''})`,
  ]
  const c = a.claim
  if (c !== null) {
    const what = `claim of ${formatWei(BigInt(c.cumulativeWei))} HTT${c.release ? ' (and release)' : ''}`
    if (c.state === 'failed') {
      const next = c.final ? 'will not be tried again' : `next try ${inTime(c.nextAttemptAtMs ?? 0, nowMs)}`
      // Chain errors may span lines; one line per fact here.
      const error = (c.lastError ?? 'unknown error').replace(/\s*\n\s*/g, ' ')
      lines.push(`      ${what} FAILED (${c.attempts} attempt${c.attempts === 1 ? '' : 's'}): ${error}; ${next}`)
    } else if (c.state === 'sent') {
      lines.push(`      ${what} sent in ${c.txHash ?? '?'}${c.blockNumber === null ? '' : ` (block ${c.blockNumber})`}, waiting for confirmations; not counted as claimed yet`)
    } else if (c.state === 'pending') {
      lines.push(`      ${what} being sent (attempt ${c.attempts})`)
    }
  }
  return lines
}

export function formatEarnings(report: EarningsReport, currency: { name: string; rate: number } | undefined): string {
  const t = report.totals
  const fiat = (wei: string | null): string => (wei === null || currency === undefined ? '' : `  (~${weiToFiat(BigInt(wei), currency.rate).toFixed(4)} ${currency.name})`)
  const lines = [
    `${t.agreements} agreements, ${t.tasks} tasks, ${(t.cpuMs / 1000).toFixed(1)} CPU-seconds delivered`,
    `  revenue     ${formatWei(BigInt(t.revenueWei))} HTT${fiat(t.revenueWei)}  (vouchers signed by requestors)`,
    `  claimed     ${formatWei(BigInt(t.claimedWei))} HTT on chain, confirmed`,
    ...(BigInt(t.confirmingWei) > 0n ? [`  confirming  ${formatWei(BigInt(t.confirmingWei))} HTT claimed, waiting for confirmations`] : []),
    `  unclaimed   ${formatWei(BigInt(t.unclaimedWei))} HTT (claimed at the end of each agreement, before expiry, and at start)`,
    `  owed        ${formatWei(BigInt(t.owedWei))} HTT billed but not yet covered by a voucher`,
    ...claimsSummary(t),
    ...(t.estimatedCostWei === null ? [] : [`  est. cost   ${formatWei(BigInt(t.estimatedCostWei))} HTT${fiat(t.estimatedCostWei)}  (power and wear)`]),
    ...(t.netWei === null ? [] : [`  net         ${formatWei(BigInt(t.netWei))} HTT${fiat(t.netWei)}`]),
  ]
  for (const a of report.agreements) lines.push(...formatAgreementMoney(a))
  return `${lines.join('\n')}\n`
}

export async function runProviderEarnings(flags: Flags, io: CommandIo, env: NodeJS.ProcessEnv = process.env): Promise<EarningsReport> {
  const dbPath = join(flags.dataDir, 'node.db')
  if (!existsSync(dbPath)) {
    throw new HearthError('HEARTH_ERR_CLI_ARGUMENT_INVALID', `${flags.dataDir} holds no provider database (node.db)`, { hint: 'pass the --data-dir the provider was started with' })
  }
  // Costs come from the config (or, without one, the default figures every `init` starts from).
  const config: ProviderConfig | undefined = await loadConfig(flags, env)
  const currency = config === undefined ? undefined : { name: config.costs.currency, rate: config.costs.tokenFiatRate }
  // A running provider answers with its live figures (tasks running now count towards the exposure).
  const running = await readApiInfo(flags.dataDir).catch(() => undefined)
  if (running !== undefined && alive(running.pid)) {
    const report = (await callLocalApi(flags.dataDir, 'earnings', { timeoutMs: 10_000 })) as EarningsReport
    io.stdout.write(flags.json === true ? `${JSON.stringify(report)}\n` : formatEarnings(report, currency))
    return report
  }
  const store = openStore({ path: dbPath })
  try {
    const machine = machineFacts(flags.dataDir)
    const report = readEarnings(store, config === undefined ? undefined : { owner: ownerCosts(config), share: { machineThreads: machine.threads, lentThreads: config.resources.threads } })
    io.stdout.write(flags.json === true ? `${JSON.stringify(report)}\n` : formatEarnings(report, currency))
    return report
  } finally {
    store.close()
  }
}

/** Asks the provider to stop and waits until its process has gone. */
export async function runProviderStop(flags: Flags, io: CommandIo, timeoutMs = 120_000): Promise<void> {
  const info = await readApiInfo(flags.dataDir)
  await callLocalApi(flags.dataDir, 'stop')
  const deadline = Date.now() + timeoutMs
  // The provider removes its status file once it has claimed what is owed and closed.
  while (Date.now() < deadline && (await readApiInfo(flags.dataDir)) !== undefined && alive(info?.pid)) await new Promise((r) => setTimeout(r, 200))
  const done = (await readApiInfo(flags.dataDir)) === undefined
  io.stdout.write(flags.json === true ? `${JSON.stringify({ stopped: done, pid: info?.pid ?? null })}\n` : done ? `Provider ${info?.pid ?? ''} stopped.\n` : `Provider ${info?.pid ?? ''} is still stopping.\n`)
  if (!done) throw new HearthError('HEARTH_ERR_NET_TIMEOUT', `the provider did not stop within ${timeoutMs / 1000} s`)
}

function alive(pid: number | undefined): boolean {
  if (pid === undefined) return false
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

export function registerProviderCommand(program: Command, io: CommandIo, options: { stopSignal?: AbortSignal; env?: NodeJS.ProcessEnv } = {}): void {
  const env = options.env ?? process.env
  const provider = program.command('provider').description('lend this machine: configure, start, watch and stop a provider')
  const common = (command: Command): Command =>
    command
      .option('--data-dir <dir>', 'the provider\'s folder: key, database, config, API key', defaultDataDir)
      .option('--config <file>', `the config file (default: DATA-DIR/${configFileName})`)
      .option('--json', 'print one JSON object')

  addSettingFlags(
    common(provider.command('init').description('write a commented config file, from flags or by asking (on a terminal)'))
      .option('--force', 'overwrite an existing config file')
      .option('--yes', 'ask nothing: defaults and flags only')
      .option('--preset <runtime>', 'start from the price preset of this runtime: wasi, native or docker', 'wasi')
      .option('--suggest-price', 'price from your costs: break-even plus 50%'),
  ).action(async (flags: Flags) => {
    await runProviderInit(flags, io, env)
  })

  addSettingFlags(common(provider.command('start').description('run the provider in the foreground until Ctrl-C, SIGTERM or hearth provider stop'))).action(async (flags: Flags) => {
    await runProviderStart(flags, io, { env, ...(options.stopSignal === undefined ? {} : { stopSignal: options.stopSignal }) })
  })

  common(provider.command('status').description('what the running provider offers, whether it is lending, and what it has earned')).action(async (flags: Flags) => {
    const status = (await callLocalApi(flags.dataDir, 'status', { timeoutMs: 10_000 })) as ProviderStatus
    io.stdout.write(flags.json === true ? `${JSON.stringify(status)}\n` : formatStatus(status))
  })

  common(provider.command('earnings').description('revenue, claimed and unclaimed payments, estimated cost and net: from the running provider, else from its database')).action(async (flags: Flags) => {
    await runProviderEarnings(flags, io, env)
  })

  common(provider.command('stop').description('stop the running provider gracefully: no new work, running tasks finish, payments claimed')).action(async (flags: Flags) => {
    await runProviderStop(flags, io)
  })
}
