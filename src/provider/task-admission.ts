/**
 * The tasks running on this provider and what they hold, and admission against the owner's bounds across all of
 * them: the memory their requests ask for together, the disk their inputs and outputs take together, and no more
 * programs or containers (processes of their own) at once than the threads lent. Each running task can be handed
 * back (aborted) when the owner wants the machine.
 */
import { HearthError } from '../errors.ts'
import type { RunTaskRequest } from '../exec/task-protocols.ts'

/** Tasks running now and what they hold; `childTasks` run in processes of their own (native, docker). */
export interface RunningTasks {
  tasks: number
  childTasks: number
  memoryBytes: number
  diskBytes: number
}

export interface TaskAdmissionInit {
  /** Threads lent: child tasks run one core each at most. */
  threads: number
  /** Bounds across all running tasks (none by default). */
  admission: { maxTotalMemoryBytes?: number; maxTotalDiskBytes?: number } | undefined
}

export interface TaskAdmission {
  /**
   * Registers the task as running, or refuses it with HEARTH_ERR_PROVIDER_BUSY (no room now) or
   * HEARTH_ERR_PROVIDER_TOO_SMALL (never room). `handBack` is aborted when running tasks are handed back. Returns
   * what lets its room go.
   */
  admit(request: RunTaskRequest, handBack: AbortController): () => void
  /** Aborts every running task (they answer that they were handed back). */
  handBackAll(): void
  running(): RunningTasks
}

interface Held {
  memoryBytes: number
  diskBytes: number
  child: boolean
  abort: AbortController
}

export function createTaskAdmission(init: TaskAdmissionInit): TaskAdmission {
  const held = new Set<Held>()

  function running(): RunningTasks {
    const total: RunningTasks = { tasks: 0, childTasks: 0, memoryBytes: 0, diskBytes: 0 }
    for (const task of held) {
      total.tasks++
      if (task.child) total.childTasks++
      total.memoryBytes += task.memoryBytes
      total.diskBytes += task.diskBytes
    }
    return total
  }

  /** Refuses a task that would take the running tasks past the owner's memory or disk bound. */
  function check(request: RunTaskRequest): { memoryBytes: number; diskBytes: number } {
    const memoryBytes = request.maxMemoryBytes
    const diskBytes = request.inputs.reduce((sum, input) => sum + input.sizeBytes, 0) + request.maxOutputBytes
    const { memoryBytes: memoryInUse, diskBytes: diskInUse, childTasks } = running()
    const { maxTotalMemoryBytes, maxTotalDiskBytes } = init.admission ?? {}
    const over =
      maxTotalMemoryBytes !== undefined && memoryInUse + memoryBytes > maxTotalMemoryBytes
        ? `memory: ${memoryInUse} bytes in use + ${memoryBytes} asked > ${maxTotalMemoryBytes} lent`
        : maxTotalDiskBytes !== undefined && diskInUse + diskBytes > maxTotalDiskBytes
          ? `disk: ${diskInUse} bytes in use + ${diskBytes} asked > ${maxTotalDiskBytes} lent`
          : undefined
    // A task asking more than all the owner lends never fits here: not busy, or its requestor would wait for room forever.
    const never = (maxTotalMemoryBytes !== undefined && memoryBytes > maxTotalMemoryBytes) || (maxTotalDiskBytes !== undefined && diskBytes > maxTotalDiskBytes)
    if (over !== undefined && never) {
      throw new HearthError('HEARTH_ERR_PROVIDER_TOO_SMALL', `this provider has no room for the task now (${over}) and never will: the task alone asks more than it lends to all its tasks together`, {
        hint: 'run the task on a provider that lends more, or ask for less memory (maxMemoryBytes) or output (maxOutputBytes)',
        details: { memoryBytes, diskBytes, maxTotalMemoryBytes, maxTotalDiskBytes },
      })
    }
    if (over !== undefined) {
      throw new HearthError('HEARTH_ERR_PROVIDER_BUSY', `this provider has no room for the task now (${over})`, {
        hint: 'run the task on another provider, or try this one once its running tasks finish',
        details: { memoryInUse, diskInUse, memoryBytes, diskBytes },
      })
    }
    // Programs and containers run in processes of their own, one core each at most: no more at once than the threads lent.
    if (request.runtime !== 'wasi' && childTasks >= init.threads) {
      throw new HearthError('HEARTH_ERR_PROVIDER_BUSY', `this provider has no room for the task now (${childTasks} of its ${init.threads} threads run tasks)`, {
        hint: 'run the task on another provider, or try this one once its running tasks finish',
        details: { childTasks, threads: init.threads },
      })
    }
    return { memoryBytes, diskBytes }
  }

  return {
    admit(request, handBack) {
      const task: Held = { ...check(request), child: request.runtime !== 'wasi', abort: handBack }
      held.add(task)
      return () => void held.delete(task)
    },
    handBackAll() {
      for (const task of held) task.abort.abort()
    },
    running,
  }
}
