/**
 * What a provider node's configuration asks of its agent: where it works, its prices and the resources it offers,
 * the owner's admission policy (agreements at once, their length, who may or may not hire), the bounds on memory and
 * disk across running tasks (default: all that is lent), when vouchers are claimed, how much unpaid work is risked,
 * and where earnings go.
 */
import { join } from 'node:path'
import { parseEther, type Address } from 'viem'
import { pricingFromConfig, servicesFromConfig, type ProviderConfig } from './config.ts'
import type { ProviderAgentInit } from './provider-agent.ts'

const gib = 1024 ** 3

export type AgentSettings = Pick<ProviderAgentInit, 'workDir' | 'pricing' | 'threads' | 'memGib' | 'properties' | 'policy' | 'admission' | 'claimPolicy' | 'accountLimits' | 'payoutAddress' | 'services' | 'storage'>

export function agentSettings(config: ProviderConfig, dataDir: string): AgentSettings {
  const { location, admission, resources } = config
  return {
    workDir: join(dataDir, 'work'),
    pricing: pricingFromConfig(config.pricing),
    threads: resources.threads,
    memGib: resources.memoryGib,
    properties: {
      'golem.inf.storage.gib': resources.diskGib,
      ...(location.countryCode === undefined ? {} : { 'golem.node.geo.country_code': location.countryCode }),
      ...(location.lat === undefined ? {} : { 'hearth.geo.lat': location.lat }),
      ...(location.lon === undefined ? {} : { 'hearth.geo.lon': location.lon }),
      ...(location.region === undefined ? {} : { 'hearth.geo.region': location.region }),
    },
    policy: {
      maxConcurrentAgreements: admission.maxConcurrentAgreements,
      maxAgreementSec: admission.maxJobDurationSec,
      maxDebitNoteIntervalSec: config.payments.maxDebitNoteIntervalSec,
      ...(admission.allowedRequestors.length === 0 ? {} : { allowedRequestors: new Set(admission.allowedRequestors.map((a) => a.toLowerCase())) }),
      ...(admission.deniedRequestors.length === 0 ? {} : { deniedRequestors: new Set(admission.deniedRequestors.map((a) => a.toLowerCase())) }),
    },
    admission: {
      maxTotalMemoryBytes: Math.floor((admission.maxTotalMemoryGib ?? resources.memoryGib) * gib),
      maxTotalDiskBytes: Math.floor((admission.maxTotalDiskGib ?? resources.diskGib) * gib),
    },
    claimPolicy: {
      ...(config.claim.thresholdHtt === undefined ? {} : { thresholdWei: parseEther(config.claim.thresholdHtt) }),
      confirmations: config.payments.confirmations,
    },
    accountLimits: {
      maxUnpaidTasks: config.payments.maxUnpaidTasks,
      ...(config.payments.maxUnpaidHtt === undefined ? {} : { maxUnpaidWei: parseEther(config.payments.maxUnpaidHtt) }),
      minClaimGraceSec: config.payments.minClaimGraceSec,
    },
    services: servicesFromConfig(config.services),
    ...(config.storage.enabled ? { storage: { offeredGib: config.storage.offeredGib, perGibHourWei: parseEther(config.storage.perGibHourHtt).toString(), dir: join(dataDir, 'storage'), graceSec: config.storage.graceSec } } : {}),
    ...(config.payments.payoutAddress === undefined ? {} : { payoutAddress: config.payments.payoutAddress as Address }),
  }
}
