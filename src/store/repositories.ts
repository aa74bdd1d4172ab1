/**
 * One repository per aggregate. Documents (agreements, vouchers, results) are stored as the exact JSON that was signed,
 * so a restarted node can still prove what was agreed; amounts are decimal strings because SQLite integers stop at 2^63.
 */
import type { Db } from './database.ts'
import type { WriteBehind } from './write-behind.ts'

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
  /** Requestor's side: when the provider acknowledged the voucher (null: not known to have arrived). */
  deliveredAtMs: number | null
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
  const stateById = db.prepare<[string], { state: string }>('SELECT state FROM agreements WHERE id = ?')
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
    /** The agreement's state alone (undefined when there is none): what every task's checks read. */
    state(id: string): string | undefined {
      return stateById.get(id)?.state
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
  delivered_at_ms: number | null
}

/** A cumulative amount as a fixed-width string, so that SQLite orders amounts as numbers ('9' < '10'). */
function amountKey(wei: bigint): string {
  return wei.toString().padStart(78, '0')
}

export function createVoucherRepository(db: Db) {
  const insert = db.prepare(
    `INSERT OR IGNORE INTO vouchers (agreement_id, cumulative_wei, amount_key, document, received_at_ms, claimed_tx)
     VALUES (@agreementId, @cumulativeWei, @amountKey, @document, @receivedAtMs, @claimedTx)`,
  )
  const forAgreement = db.prepare<[string], VoucherRow>('SELECT * FROM vouchers WHERE agreement_id = ? ORDER BY amount_key')
  const newest = db.prepare<[string], VoucherRow>('SELECT * FROM vouchers WHERE agreement_id = ? ORDER BY amount_key DESC LIMIT 1')
  const newestAmount = db.prepare<[string], { cumulative_wei: string }>('SELECT cumulative_wei FROM vouchers WHERE agreement_id = ? ORDER BY amount_key DESC LIMIT 1')
  const newestClaimed = db.prepare<[string], VoucherRow>('SELECT * FROM vouchers WHERE agreement_id = ? AND claimed_tx IS NOT NULL ORDER BY amount_key DESC LIMIT 1')
  const newestDelivered = db.prepare<[string], VoucherRow>('SELECT * FROM vouchers WHERE agreement_id = ? AND delivered_at_ms IS NOT NULL ORDER BY amount_key DESC LIMIT 1')
  const markClaimed = db.prepare('UPDATE vouchers SET claimed_tx = ? WHERE agreement_id = ? AND cumulative_wei = ?')
  const unmarkClaimed = db.prepare('UPDATE vouchers SET claimed_tx = NULL WHERE agreement_id = ? AND claimed_tx = ?')
  const markDelivered = db.prepare('UPDATE vouchers SET delivered_at_ms = ? WHERE agreement_id = ? AND cumulative_wei = ? AND delivered_at_ms IS NULL')
  const newestUnclaimed = db.prepare<[], VoucherRow>(
    `SELECT v.* FROM vouchers v
     JOIN (SELECT agreement_id, MAX(amount_key) AS top FROM vouchers GROUP BY agreement_id) m
       ON v.agreement_id = m.agreement_id AND v.amount_key = m.top
     WHERE v.claimed_tx IS NULL`,
  )
  const fromRow = (row: VoucherRow): VoucherRecord => ({
    agreementId: row.agreement_id,
    cumulativeWei: BigInt(row.cumulative_wei),
    document: JSON.parse(row.document),
    receivedAtMs: row.received_at_ms,
    claimedTx: row.claimed_tx,
    deliveredAtMs: row.delivered_at_ms,
  })
  const one = (row: VoucherRow | undefined): VoucherRecord | undefined => (row === undefined ? undefined : fromRow(row))
  return {
    save(record: Omit<VoucherRecord, 'claimedTx' | 'deliveredAtMs'> & { claimedTx?: string | null }): void {
      insert.run({
        agreementId: record.agreementId,
        cumulativeWei: record.cumulativeWei.toString(),
        amountKey: amountKey(record.cumulativeWei),
        document: JSON.stringify(record.document),
        receivedAtMs: record.receivedAtMs,
        claimedTx: record.claimedTx ?? null,
      })
    },
    /** The voucher with the highest cumulative amount (an index lookup, however many there are). */
    latest: (agreementId: string): VoucherRecord | undefined => one(newest.get(agreementId)),
    /** latest's amount alone (0 when none): what every task's exposure check reads, without parsing the voucher. */
    latestWei(agreementId: string): bigint {
      const row = newestAmount.get(agreementId)
      return row === undefined ? 0n : BigInt(row.cumulative_wei)
    },
    /** Every voucher of the agreement, lowest amount first. */
    listFor(agreementId: string): VoucherRecord[] {
      return forAgreement.all(agreementId).map(fromRow)
    },
    /** The highest cumulative amount already claimed on chain for the agreement (0 when none). */
    claimedWei(agreementId: string): bigint {
      const row = newestClaimed.get(agreementId)
      return row === undefined ? 0n : BigInt(row.cumulative_wei)
    },
    markClaimed(agreementId: string, cumulativeWei: bigint, txHash: string): void {
      markClaimed.run(txHash, agreementId, cumulativeWei.toString())
    },
    /** The claim in `txHash` is no longer on chain (a reorganisation): its vouchers are unclaimed again. */
    unmarkClaimed(agreementId: string, txHash: string): void {
      unmarkClaimed.run(agreementId, txHash)
    },
    /** The requestor's side: the provider acknowledged this voucher. */
    markDelivered(agreementId: string, cumulativeWei: bigint, atMs = Date.now()): void {
      markDelivered.run(atMs, agreementId, cumulativeWei.toString())
    },
    /** The highest voucher the provider acknowledged (requestor's side). */
    latestDelivered: (agreementId: string): VoucherRecord | undefined => one(newestDelivered.get(agreementId)),
    /** The newest voucher of each agreement whose newest voucher has not been claimed yet. */
    unclaimed(): VoucherRecord[] {
      return newestUnclaimed.all().map(fromRow)
    },
  }
}

export type ClaimState = 'pending' | 'sent' | 'confirmed' | 'failed'

/** A provider's claim of one agreement's voucher on chain: what, how far it got, and when to try again. */
export interface ClaimRecord {
  agreementId: string
  cumulativeWei: bigint
  release: boolean
  state: ClaimState
  txHash: string | null
  blockNumber: number | null
  attempts: number
  lastError: string | null
  nextAttemptAtMs: number
  updatedAtMs: number
}

interface ClaimRow {
  agreement_id: string
  cumulative_wei: string
  release: number
  state: ClaimState
  tx_hash: string | null
  block_number: number | null
  attempts: number
  last_error: string | null
  next_attempt_at_ms: number
  updated_at_ms: number
}

export function createClaimRepository(db: Db) {
  const upsert = db.prepare(
    `INSERT INTO claims (agreement_id, cumulative_wei, release, state, tx_hash, block_number, attempts, last_error, next_attempt_at_ms, updated_at_ms)
     VALUES (@agreementId, @cumulativeWei, @release, @state, @txHash, @blockNumber, @attempts, @lastError, @nextAttemptAtMs, @updatedAtMs)
     ON CONFLICT (agreement_id) DO UPDATE SET cumulative_wei = excluded.cumulative_wei, release = excluded.release,
       state = excluded.state, tx_hash = excluded.tx_hash, block_number = excluded.block_number, attempts = excluded.attempts,
       last_error = excluded.last_error, next_attempt_at_ms = excluded.next_attempt_at_ms, updated_at_ms = excluded.updated_at_ms`,
  )
  const byId = db.prepare<[string], ClaimRow>('SELECT * FROM claims WHERE agreement_id = ?')
  const all = db.prepare<[], ClaimRow>('SELECT * FROM claims ORDER BY updated_at_ms')
  const fromRow = (row: ClaimRow): ClaimRecord => ({
    agreementId: row.agreement_id,
    cumulativeWei: BigInt(row.cumulative_wei),
    release: row.release === 1,
    state: row.state,
    txHash: row.tx_hash,
    blockNumber: row.block_number,
    attempts: row.attempts,
    lastError: row.last_error,
    nextAttemptAtMs: row.next_attempt_at_ms,
    updatedAtMs: row.updated_at_ms,
  })
  return {
    save(record: ClaimRecord): void {
      upsert.run({ ...record, cumulativeWei: record.cumulativeWei.toString(), release: record.release ? 1 : 0 })
    },
    get(agreementId: string): ClaimRecord | undefined {
      const row = byId.get(agreementId)
      return row === undefined ? undefined : fromRow(row)
    },
    list(filter: { state?: ClaimState } = {}): ClaimRecord[] {
      return all.all().map(fromRow).filter((record) => filter.state === undefined || record.state === filter.state)
    },
  }
}

/** Where a peer was last seen, by the address of its key: the other side of an agreement, found again after a restart. */
export interface PeerRecord {
  address: string
  peerId: string
  multiaddrs: string[]
  updatedAtMs: number
}

export function createPeerRepository(db: Db) {
  const upsert = db.prepare(
    `INSERT INTO peers (address, peer_id, multiaddrs, updated_at_ms) VALUES (@address, @peerId, @multiaddrs, @updatedAtMs)
     ON CONFLICT (address) DO UPDATE SET peer_id = excluded.peer_id, multiaddrs = excluded.multiaddrs, updated_at_ms = excluded.updated_at_ms`,
  )
  const byAddress = db.prepare<[string], { address: string; peer_id: string; multiaddrs: string; updated_at_ms: number }>('SELECT * FROM peers WHERE address = ?')
  return {
    remember(record: PeerRecord): void {
      upsert.run({ address: record.address.toLowerCase(), peerId: record.peerId, multiaddrs: JSON.stringify(record.multiaddrs), updatedAtMs: record.updatedAtMs })
    },
    get(address: string): PeerRecord | undefined {
      const row = byAddress.get(address.toLowerCase())
      return row === undefined ? undefined : { address: row.address, peerId: row.peer_id, multiaddrs: JSON.parse(row.multiaddrs) as string[], updatedAtMs: row.updated_at_ms }
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

export function createTaskResultRepository(db: Db, writes: WriteBehind) {
  const insert = db.prepare(
    `INSERT INTO task_results (job_id, task_index, agreement_id, provider, document, accepted_at_ms)
     VALUES (@jobId, @taskIndex, @agreementId, @provider, @document, @acceptedAtMs)`,
  )
  const byJob = db.prepare<[string], TaskResultRow>('SELECT * FROM task_results WHERE job_id = ? ORDER BY task_index')
  return {
    save(record: TaskResultRecord): void {
      writes.flush()
      insert.run({ ...record, document: JSON.stringify(record.document) })
    },
    /**
     * save, made with the other writes of this turn of the event loop (see write-behind.ts). `documentJson`, when
     * given, is the document already serialised (results of one batch share most of theirs).
     */
    saveSoon(record: TaskResultRecord, documentJson?: string): void {
      const row = { ...record, document: documentJson ?? JSON.stringify(record.document) }
      writes.soon(`task-result ${record.jobId} ${record.taskIndex}`, () => insert.run(row))
    },
    listByJob(jobId: string): TaskResultRecord[] {
      writes.flush()
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
export function createPaymentDocumentRepository(db: Db, writes: WriteBehind) {
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
      // After what is pending: a later write must not be overtaken by an earlier one of the same document.
      writes.flush()
      upsert.run({ ...record, document: JSON.stringify(record.document) })
    },
    /** save, made with the other writes of this turn of the event loop (the latest of one document only). */
    saveSoon(record: PaymentDocumentRecord): void {
      const row = { ...record, document: JSON.stringify(record.document) }
      writes.soon(`payment-document ${record.agreementId} ${record.kind} ${record.seq}`, () => upsert.run(row))
    },
    list(filter: { agreementId?: string; kind?: PaymentDocumentKind } = {}): PaymentDocumentRecord[] {
      writes.flush()
      const rows = filter.agreementId === undefined ? all.all() : byAgreement.all(filter.agreementId)
      return rows.map(fromRow).filter((record) => filter.kind === undefined || record.kind === filter.kind)
    },
  }
}

export interface ProviderReputationRecord {
  /** Lower-case address. */
  provider: string
  valid: number
  invalid: number
  failed: number
  timeouts: number
  unchecked: number
  consecutiveValid: number
  /** The latest checked outcomes, oldest first: 'v' valid, 'i' invalid. */
  recent: string
  excludedAtMs: number | null
  excludedReason: string | null
  lastSeenMs: number
}

interface ProviderReputationRow {
  provider: string
  valid: number
  invalid: number
  failed: number
  timeouts: number
  unchecked: number
  consecutive_valid: number
  recent: string
  excluded_at_ms: number | null
  excluded_reason: string | null
  last_seen_ms: number
}

/** Each provider's verification record, kept by the requestor that checked its results. */
export function createProviderReputationRepository(db: Db, writes: WriteBehind) {
  const upsert = db.prepare(
    `INSERT INTO provider_reputation (provider, valid, invalid, failed, timeouts, unchecked, consecutive_valid, recent, excluded_at_ms, excluded_reason, last_seen_ms)
     VALUES (@provider, @valid, @invalid, @failed, @timeouts, @unchecked, @consecutiveValid, @recent, @excludedAtMs, @excludedReason, @lastSeenMs)
     ON CONFLICT (provider) DO UPDATE SET valid = excluded.valid, invalid = excluded.invalid, failed = excluded.failed,
       timeouts = excluded.timeouts, unchecked = excluded.unchecked, consecutive_valid = excluded.consecutive_valid,
       recent = excluded.recent, excluded_at_ms = excluded.excluded_at_ms, excluded_reason = excluded.excluded_reason,
       last_seen_ms = excluded.last_seen_ms`,
  )
  const byProvider = db.prepare<[string], ProviderReputationRow>('SELECT * FROM provider_reputation WHERE provider = ?')
  const all = db.prepare<[], ProviderReputationRow>('SELECT * FROM provider_reputation ORDER BY provider')
  const fromRow = (row: ProviderReputationRow): ProviderReputationRecord => ({
    provider: row.provider,
    valid: row.valid,
    invalid: row.invalid,
    failed: row.failed,
    timeouts: row.timeouts,
    unchecked: row.unchecked,
    consecutiveValid: row.consecutive_valid,
    recent: row.recent,
    excludedAtMs: row.excluded_at_ms,
    excludedReason: row.excluded_reason,
    lastSeenMs: row.last_seen_ms,
  })
  return {
    save(record: ProviderReputationRecord): void {
      writes.flush()
      upsert.run({ ...record, provider: record.provider.toLowerCase() })
    },
    /** save, made with the other writes of this turn of the event loop (the latest of one provider's only). */
    saveSoon(record: ProviderReputationRecord): void {
      const row = { ...record, provider: record.provider.toLowerCase() }
      writes.soon(`provider-reputation ${row.provider}`, () => upsert.run(row))
    },
    get(provider: string): ProviderReputationRecord | undefined {
      writes.flush()
      const row = byProvider.get(provider.toLowerCase())
      return row === undefined ? undefined : fromRow(row)
    },
    list(): ProviderReputationRecord[] {
      writes.flush()
      return all.all().map(fromRow)
    },
  }
}

export type JobState = 'running' | 'finished' | 'failed'

export interface JobRecord {
  id: string
  name: string
  specDigest: string
  taskCount: number
  state: JobState
  createdAtMs: number
  updatedAtMs: number
}

interface JobRow {
  id: string
  name: string
  spec_digest: string
  task_count: number
  state: JobState
  created_at_ms: number
  updated_at_ms: number
}

export function createJobRepository(db: Db) {
  const insert = db.prepare(
    `INSERT INTO jobs (id, name, spec_digest, task_count, state, created_at_ms, updated_at_ms)
     VALUES (@id, @name, @specDigest, @taskCount, @state, @createdAtMs, @updatedAtMs)`,
  )
  const update = db.prepare('UPDATE jobs SET state = ?, updated_at_ms = ? WHERE id = ?')
  const byId = db.prepare<[string], JobRow>('SELECT * FROM jobs WHERE id = ?')
  const all = db.prepare<[], JobRow>('SELECT * FROM jobs ORDER BY created_at_ms')
  const fromRow = (row: JobRow): JobRecord => ({
    id: row.id,
    name: row.name,
    specDigest: row.spec_digest,
    taskCount: row.task_count,
    state: row.state,
    createdAtMs: row.created_at_ms,
    updatedAtMs: row.updated_at_ms,
  })
  return {
    create(record: JobRecord): void {
      insert.run(record)
    },
    setState(id: string, state: JobState): void {
      update.run(state, Date.now(), id)
    },
    get(id: string): JobRecord | undefined {
      const row = byId.get(id)
      return row === undefined ? undefined : fromRow(row)
    },
    list(): JobRecord[] {
      return all.all().map(fromRow)
    },
  }
}
