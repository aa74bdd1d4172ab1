/**
 * The owner's idle policy applied to a provider node's agent: lending resumes when the machine is idle, and pauses
 * (running tasks handed back to their requestors) when the owner is using it. The first look, before the agent
 * starts, decides whether the offer goes out at start.
 */
import type { ProviderConfig } from './config.ts'
import { createIdleMonitor, powerKnown, systemIdleSources, type IdleMonitor, type IdleSources } from './idle-policy.ts'
import type { ProviderAgent } from './provider-agent.ts'

export interface IdleWatchInit {
  config: ProviderConfig
  agent: ProviderAgent
  /** The owner's load, power and clock; default: the machine's. */
  idleSources: IdleSources | undefined
  log(line: string): void
}

/** Starts the idle monitor, or does nothing (undefined) when the owner's policy is off. */
export async function startIdleWatch(init: IdleWatchInit): Promise<IdleMonitor | undefined> {
  const { config, agent, log } = init
  if (!config.idle.enabled) return undefined
  const sources = init.idleSources ?? systemIdleSources(() => agent.running().childTasks)
  if (init.idleSources === undefined && config.idle.requireMains && !powerKnown()) {
    log('warning: idle.requireMains cannot be honoured here: only on Linux does Hearth see whether the machine runs on battery')
  }
  const monitor = createIdleMonitor({
    rules: config.idle,
    sources,
    checkEveryMs: config.idle.checkEverySec * 1000,
    resumeAfterMs: config.idle.resumeAfterSec * 1000,
    onChange: async ({ lending, reason }) => {
      if (lending) {
        await agent.resume()
        log('lending: the machine is idle; taking work')
      } else {
        // The owner is back: no new work, and running tasks go back to their requestors.
        const handedBack = agent.running().tasks
        await agent.pause(reason ?? 'the owner is using the machine', { handBack: true })
        log(`lending paused: ${reason ?? 'the owner is using the machine'}${handedBack > 0 ? ` (${handedBack} running tasks handed back)` : ''}`)
      }
    },
  })
  // The first look decides whether the offer goes out at start.
  await monitor.check()
  monitor.start()
  return monitor
}
