/** What a running job reports as it goes: the CLI draws progress from these, tests assert on them. */
export type JobEvent =
  | { type: 'phase'; message: string }
  | { type: 'offers'; count: number }
  | { type: 'agreement'; provider: string; agreementId: string }
  | { type: 'agreement-failed'; provider: string; message: string }
  | { type: 'escrow-opened'; provider: string; agreementId: string; depositWei: string; txHash: string }
  /** The job's id (give it to `hearth run --resume`) and how many tasks an earlier run of it had done. */
  | { type: 'job'; jobId: string; resumedTasks: number }
  /** A batch of tasks starts (a job has one; a map-reduce has a map and a reduce batch); task indices go on from batch to batch, its first is `firstTask`. */
  | { type: 'batch'; phase: string; total: number; done: number; firstTask?: number }
  /** `reason`: the task's first run, a retry after a failure, a check of another provider's result, or a straggler. */
  | { type: 'task-started'; taskIndex: number; provider: string; reason?: 'first' | 'retry' | 'check' | 'straggler' }
  /** `checked`: confirmed by another provider or a local recompute; `spentWei`: accepted work so far, at agreed prices. */
  | { type: 'task-done'; taskIndex: number; provider: string; done: number; total: number; checked?: boolean; spentWei?: string; agreeing?: string[] }
  /** Verification rejected this provider's result: it is not paid and counts against the provider. */
  | { type: 'task-rejected'; taskIndex: number; provider: string; reason: string }
  | { type: 'task-failed'; taskIndex: number; provider: string; message: string; willRetry: boolean }
  /** The provider acknowledged a voucher: it now holds a claim for `cumulativeWei` under the agreement. */
  | { type: 'voucher-delivered'; provider: string; agreementId: string; cumulativeWei: string }
  | { type: 'settled'; provider: string; agreementId: string; paidWei: string; refundedWei: string; txHash: string | null }
  /** A provider's offered threads and CPU score, checked by a probe: what it delivered, and why it over-claims if it does. */
  | { type: 'probe'; provider: string; measuredThreads: number; measuredScore: number; overClaimed?: string }

export type JobEventListener = (event: JobEvent) => void
