/** What a running job reports as it goes: the CLI draws progress from these, tests assert on them. */
export type JobEvent =
  | { type: 'phase'; message: string }
  | { type: 'offers'; count: number }
  | { type: 'agreement'; provider: string; agreementId: string }
  | { type: 'agreement-failed'; provider: string; message: string }
  | { type: 'escrow-opened'; provider: string; agreementId: string; depositWei: string; txHash: string }
  | { type: 'task-started'; taskIndex: number; provider: string }
  | { type: 'task-done'; taskIndex: number; provider: string; done: number; total: number }
  | { type: 'task-failed'; taskIndex: number; provider: string; message: string; willRetry: boolean }
  /** The provider acknowledged a voucher: it now holds a claim for `cumulativeWei` under the agreement. */
  | { type: 'voucher-delivered'; provider: string; agreementId: string; cumulativeWei: string }
  | { type: 'settled'; provider: string; agreementId: string; paidWei: string; refundedWei: string; txHash: string | null }

export type JobEventListener = (event: JobEvent) => void
