/**
 * The node database's schema, as an append-only list of migrations. Version N is `migrations[N - 1]`;
 * SQLite's `user_version` records how many have run. Never edit a released migration: add a new one.
 */
export const migrations: readonly string[] = [
  // 1: agreements both sides signed, the escrow that backs each, the vouchers exchanged, and task results.
  `
  CREATE TABLE agreements (
    id TEXT PRIMARY KEY,               -- SHA-256 of the agreement's canonical JSON (0x…)
    role TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
    requestor TEXT NOT NULL,
    provider TEXT NOT NULL,
    state TEXT NOT NULL,
    document TEXT NOT NULL,            -- the agreement with both signatures, as JSON
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
  );
  CREATE INDEX agreements_state ON agreements (state);

  CREATE TABLE escrows (
    agreement_id TEXT PRIMARY KEY REFERENCES agreements (id),
    deposited_wei TEXT NOT NULL,
    open_tx TEXT,
    claimed_wei TEXT NOT NULL DEFAULT '0',
    refunded_wei TEXT NOT NULL DEFAULT '0',
    closed INTEGER NOT NULL DEFAULT 0
  );

  CREATE TABLE vouchers (
    agreement_id TEXT NOT NULL REFERENCES agreements (id),
    cumulative_wei TEXT NOT NULL,
    document TEXT NOT NULL,            -- the signed voucher, as JSON
    received_at_ms INTEGER NOT NULL,
    claimed_tx TEXT,
    PRIMARY KEY (agreement_id, cumulative_wei)
  );

  CREATE TABLE task_results (
    job_id TEXT NOT NULL,
    task_index INTEGER NOT NULL,
    agreement_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    document TEXT NOT NULL,            -- the provider-signed result (task, input and output hashes)
    accepted_at_ms INTEGER NOT NULL,
    PRIMARY KEY (job_id, task_index)
  );
  `,
  // 2: billing documents (debit notes, invoices) and each agreement's metered work, kept by both sides.
  `
  CREATE TABLE payment_documents (
    agreement_id TEXT NOT NULL REFERENCES agreements (id),
    kind TEXT NOT NULL CHECK (kind IN ('debit-note', 'invoice', 'usage')),
    seq INTEGER NOT NULL,
    document TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (agreement_id, kind, seq)
  );
  `,
]
