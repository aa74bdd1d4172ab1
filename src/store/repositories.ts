/**
 * One repository per aggregate. Documents (agreements, vouchers, results) are stored as the exact JSON that was signed,
 * so a restarted node can still prove what was agreed; amounts are decimal strings because SQLite integers stop at 2^63.
 */
import type { Db } from './database.ts'

export type AgreementRole = 'requestor' | 'provider'

export interface AgreementRecord {
  id: string
  role: AgreementRole
  requestor: string
  provider: string
  state: string
  document: unknown
  createdAtMs: number
  updatedAtMs: number
}

export interface EscrowRecord {
  agreementId: string
  depositedWei: bigint
  openTx: string | null
  claimedWei: bigint
  refundedWei: bigint
  closed: boolean
}

export interface VoucherRecord {
  agreementId: string
  cumulativeWei: bigint
  document: unknown
  receivedAtMs: number
  claimedTx: string | null
}

export interface TaskResultRecord {
  jobId: string
  taskIndex: number
  agreementId: string
  provider: string
  document: unknown
  acceptedAtMs: number
}

interface AgreementRow {
  id: string
  role: AgreementRole
  requestor: string
  provider: string
  state: string
  document: string
  created_at_ms: number
  updated_at_ms: number
}

export function createAgreementRepository(db: Db) {
  const insert = db.prepare(
    `INSERT INTO agreements (id, role, requestor, provider, state, document, created_at_ms, updated_at_ms)
     VALUES (@id, @role, @requestor, @provider, @state, @document, @createdAtMs, @updatedAtMs)
     ON CONFLICT (id) DO UPDATE SET state = excluded.state, document = excluded.document, updated_at_ms = excluded.updated_at_ms`,
  )
  const byId = db.prepare<[string], AgreementRow>('SELECT * FROM agreements WHERE id = ?')
  const byState = db.prepare<[string], AgreementRow>('SELECT * FROM agreements WHERE state = ? ORDER BY created_at_ms')
  const all = db.prepare<[], AgreementRow>('SELECT * FROM agreements ORDER BY created_at_ms')
  const updateState = db.prepare('UPDATE agreements SET state = ?, updated_at_ms = ? WHERE id = ?')
  const fromRow = (row: AgreementRow): AgreementRecord => ({
    id: row.id,
    role: row.role,
    requestor: row.requestor,
    provider: row.provider,
    state: row.state,
    document: JSON.parse(row.document),
    createdAtMs: row.created_at_ms,
    updatedAtMs: row.updated_at_ms,
  })
  return {
    save(record: AgreementRecord): void {
      insert.run({ ...record, document: JSON.stringify(record.document) })
    },
    get(id: string): AgreementRecord | undefined {
      const row = byId.get(id)
      return row === undefined ? undefined : fromRow(row)
    },
    list(filter: { state?: string } = {}): AgreementRecord[] {
      const rows = filter.state === undefined ? all.all() : byState.all(filter.state)
      return rows.map(fromRow)
    },
    setState(id: string, state: string, nowMs = Date.now()): void {
      updateState.run(state, nowMs, id)
    },
  }
}

interface EscrowRow {
  agreement_id: string
  deposited_wei: string
  open_tx: string | null
  claimed_wei: string
  refunded_wei: string
  closed: number
}

export function createEscrowRepository(db: Db) {
  const upsert = db.prepare(
    `INSERT INTO escrows (agreement_id, deposited_wei, open_tx, claimed_wei, refunded_wei, closed)
     VALUES (@agreementId, @depositedWei, @openTx, @claimedWei, @refundedWei, @closed)
     ON CONFLICT (agreement_id) DO UPDATE SET deposited_wei = excluded.deposited_wei, open_tx = excluded.open_tx,
       claimed_wei = excluded.claimed_wei, refunded_wei = excluded.refunded_wei, closed = excluded.closed`,
  )
  const byId = db.prepare<[string], EscrowRow>('SELECT * FROM escrows WHERE agreement_id = ?')
  const all = db.prepare<[], EscrowRow>('SELECT * FROM escrows')
  const fromRow = (row: EscrowRow): EscrowRecord => ({
    agreementId: row.agreement_id,
    depositedWei: BigInt(row.deposited_wei),
    openTx: row.open_tx,
    claimedWei: BigInt(row.claimed_wei),
    refundedWei: BigInt(row.refunded_wei),
    closed: row.closed === 1,
  })
  return {
    save(record: EscrowRecord): void {
      upsert.run({
        agreementId: record.agreementId,
        depositedWei: record.depositedWei.toString(),
        openTx: record.openTx,
        claimedWei: record.claimedWei.toString(),
        refundedWei: record.refundedWei.toString(),
        closed: record.closed ? 1 : 0,
      })
    },
    get(agreementId: string): EscrowRecord | undefined {
      const row = byId.get(agreementId)
      return row === undefined ? undefined : fromRow(row)
    },
    list(): EscrowRecord[] {
      return all.all().map(fromRow)
    },
  }
}

interface VoucherRow {
  agreement_id: string
  cumulative_wei: string
  document: string
  received_at_ms: number
  claimed_tx: string | null
}

export function createVoucherRepository(db: Db) {
  const insert = db.prepare(
    `INSERT OR IGNORE INTO vouchers (agreement_id, cumulative_wei, document, received_at_ms, claimed_tx)
     VALUES (@agreementId, @cumulativeWei, @document, @receivedAtMs, @claimedTx)`,
  )
  const forAgreement = db.prepare<[string], VoucherRow>('SELECT * FROM vouchers WHERE agreement_id = ?')
  const markClaimed = db.prepare('UPDATE vouchers SET claimed_tx = ? WHERE agreement_id = ? AND cumulative_wei = ?')
  const agreementsWithVouchers = db.prepare<[], { agreement_id: string }>('SELECT DISTINCT agreement_id FROM vouchers')
  const fromRow = (row: VoucherRow): VoucherRecord => ({
    agreementId: row.agreement_id,
    cumulativeWei: BigInt(row.cumulative_wei),
    document: JSON.parse(row.document),
    receivedAtMs: row.received_at_ms,
    claimedTx: row.claimed_tx,
  })
  /** Cumulative amounts are compared as bigints: as strings '9' > '10'. */
  const latest = (agreementId: string): VoucherRecord | undefined => {
    let best: VoucherRecord | undefined
    for (const row of forAgreement.all(agreementId)) {
      const record = fromRow(row)
      if (best === undefined || record.cumulativeWei > best.cumulativeWei) best = record
    }
    return best
  }
  return {
    save(record: Omit<VoucherRecord, 'claimedTx'> & { claimedTx?: string | null }): void {
      insert.run({
        agreementId: record.agreementId,
        cumulativeWei: record.cumulativeWei.toString(),
        document: JSON.stringify(record.document),
        receivedAtMs: record.receivedAtMs,
        claimedTx: record.claimedTx ?? null,
      })
    },
    latest,
    /** Every voucher of the agreement, lowest amount first. */
    listFor(agreementId: string): VoucherRecord[] {
      return forAgreement
        .all(agreementId)
        .map(fromRow)
        .sort((a, b) => (a.cumulativeWei < b.cumulativeWei ? -1 : a.cumulativeWei > b.cumulativeWei ? 1 : 0))
    },
    /** The highest cumulative amount already claimed on chain for the agreement (0 when none). */
    claimedWei(agreementId: string): bigint {
      let best = 0n
      for (const row of forAgreement.all(agreementId)) {
        if (row.claimed_tx === null) continue
        const amount = BigInt(row.cumulative_wei)
        if (amount > best) best = amount
      }
      return best
    },
    markClaimed(agreementId: string, cumulativeWei: bigint, txHash: string): void {
      markClaimed.run(txHash, agreementId, cumulativeWei.toString())
    },
    /** The newest voucher of each agreement whose newest voucher has not been claimed yet. */
    unclaimed(): VoucherRecord[] {
      return agreementsWithVouchers
        .all()
        .map((row) => latest(row.agreement_id))
        .filter((record): record is VoucherRecord => record !== undefined && record.claimedTx === null)
    },
  }
}

interface TaskResultRow {
  job_id: string
  task_index: number
  agreement_id: string
  provider: string
  document: string
  accepted_at_ms: number
}

export function createTaskResultRepository(db: Db) {
  const insert = db.prepare(
    `INSERT INTO task_results (job_id, task_index, agreement_id, provider, document, accepted_at_ms)
     VALUES (@jobId, @taskIndex, @agreementId, @provider, @document, @acceptedAtMs)`,
  )
  const byJob = db.prepare<[string], TaskResultRow>('SELECT * FROM task_results WHERE job_id = ? ORDER BY task_index')
  return {
    save(record: TaskResultRecord): void {
      insert.run({ ...record, document: JSON.stringify(record.document) })
    },
    listByJob(jobId: string): TaskResultRecord[] {
      return byJob.all(jobId).map((row) => ({
        jobId: row.job_id,
        taskIndex: row.task_index,
        agreementId: row.agreement_id,
        provider: row.provider,
        document: JSON.parse(row.document),
        acceptedAtMs: row.accepted_at_ms,
      }))
    },
  }
}

export type PaymentDocumentKind = 'debit-note' | 'invoice' | 'usage'

export interface PaymentDocumentRecord {
  agreementId: string
  kind: PaymentDocumentKind
  seq: number
  document: unknown
  createdAtMs: number
}

interface PaymentDocumentRow {
  agreement_id: string
  kind: PaymentDocumentKind
  seq: number
  document: string
  created_at_ms: number
}

/** Debit notes and invoices as signed, plus each agreement's running usage (kind 'usage', seq 0, overwritten). */
export function createPaymentDocumentRepository(db: Db) {
  const upsert = db.prepare(
    `INSERT INTO payment_documents (agreement_id, kind, seq, document, created_at_ms)
     VALUES (@agreementId, @kind, @seq, @document, @createdAtMs)
     ON CONFLICT (agreement_id, kind, seq) DO UPDATE SET document = excluded.document, created_at_ms = excluded.created_at_ms`,
  )
  const byAgreement = db.prepare<[string], PaymentDocumentRow>('SELECT * FROM payment_documents WHERE agreement_id = ? ORDER BY kind, seq')
  const all = db.prepare<[], PaymentDocumentRow>('SELECT * FROM payment_documents ORDER BY created_at_ms')
  const fromRow = (row: PaymentDocumentRow): PaymentDocumentRecord => ({
    agreementId: row.agreement_id,
    kind: row.kind,
    seq: row.seq,
    document: JSON.parse(row.document),
    createdAtMs: row.created_at_ms,
  })
  return {
    save(record: PaymentDocumentRecord): void {
      upsert.run({ ...record, document: JSON.stringify(record.document) })
    },
    list(filter: { agreementId?: string; kind?: PaymentDocumentKind } = {}): PaymentDocumentRecord[] {
      const rows = filter.agreementId === undefined ? all.all() : byAgreement.all(filter.agreementId)
      return rows.map(fromRow).filter((record) => filter.kind === undefined || record.kind === filter.kind)
    },
  }
}
