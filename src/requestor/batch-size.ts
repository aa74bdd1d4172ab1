import { maxTasksPerBatch } from '../exec/task-protocols.ts'

/**
 * Tasks per exchange with one provider. Judged by the providers' own metering (a busy network stretches round trips,
 * not the work): a batch holds about 20 ms of compute, one task until a first one is metered. And within the provider's
 * cap on unpaid work (`hearth.payment.maxUnpaidTasks` in its offer): its workers' batches together stay under half of
 * it, so that the voucher for one round reaches it before the next round meets the cap and is refused.
 */
export function batchSizeFor(computeMs: number | undefined, workers: number, maxUnpaidTasks: unknown): number {
  if (computeMs === undefined) return 1
  const cap = Number(maxUnpaidTasks)
  const withinCap = Number.isSafeInteger(cap) && cap > 0 ? Math.max(1, Math.floor(cap / (2 * Math.max(1, workers)))) : maxTasksPerBatch
  return Math.min(maxTasksPerBatch, withinCap, Math.max(1, Math.floor(20 / Math.max(computeMs, 0.1))))
}
