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
  // Each provider's verification record as this requestor saw it: counts, the current run of valid results, the
  // latest checked outcomes (for exclusion), and whether it is excluded (a ban list that outlives jobs and restarts).
  `
  CREATE TABLE provider_reputation (
    provider TEXT PRIMARY KEY,          -- lower-case address
    valid INTEGER NOT NULL DEFAULT 0,
    invalid INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    timeouts INTEGER NOT NULL DEFAULT 0,
    unchecked INTEGER NOT NULL DEFAULT 0,
    consecutive_valid INTEGER NOT NULL DEFAULT 0,
    recent TEXT NOT NULL DEFAULT '',    -- the latest checked outcomes, oldest first: 'v' valid, 'i' invalid
    excluded_at_ms INTEGER,
    excluded_reason TEXT,
    last_seen_ms INTEGER NOT NULL
  );
  `,
  // Activities (ExeScript workspaces under an agreement), kept by the provider that runs each and the requestor that
  // created it: state, the batches sent, metered usage and the last error, so a restart can tell what was running.
  `
  CREATE TABLE activities (
    role TEXT NOT NULL CHECK (role IN ('requestor', 'provider')),
    id TEXT NOT NULL,
    agreement_id TEXT NOT NULL,
    peer TEXT NOT NULL,                 -- the other side's address
    state TEXT NOT NULL,                -- New, Deploying, Initialized, Ready, Terminated, Unresponsive
    batch_ids TEXT NOT NULL DEFAULT '[]',
    usage TEXT,                         -- JSON { durationSec, cpuSec }
    last_error TEXT,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (role, id)
  );
  CREATE INDEX activities_state ON activities (role, state);
  `,
  // The requestor's jobs, so that a job cut short (a crash, a kill) can be resumed: what it was, how many tasks, and
  // its state. Its accepted results are in task_results; its agreements name it in their terms.
  `
  CREATE TABLE jobs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    spec_digest TEXT NOT NULL,          -- hash of what defines the tasks: a resumed job must be the same job
    task_count INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'finished', 'failed')),
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
  );
  `,
  // 6: money that must not be lost or found slowly. Vouchers get a sortable amount (finding the newest was a scan of
  // every row), and the time the provider acknowledged one (the requestor delivers until it does). Claims are kept
  // one row per attempt chain, so a failed or dropped claim is retried and shown, not forgotten. Peers are remembered
  // by address, so the two sides of an agreement can find each other again after a restart.
  `
  ALTER TABLE vouchers ADD COLUMN amount_key TEXT NOT NULL DEFAULT '';
  UPDATE vouchers SET amount_key = substr('${'0'.repeat(78)}' || cumulative_wei, -78, 78);
  ALTER TABLE vouchers ADD COLUMN delivered_at_ms INTEGER;
  CREATE INDEX vouchers_amount ON vouchers (agreement_id, amount_key);

  CREATE TABLE claims (
    agreement_id TEXT PRIMARY KEY REFERENCES agreements (id),
    cumulative_wei TEXT NOT NULL,       -- the voucher being claimed
    release INTEGER NOT NULL DEFAULT 0, -- the claim also gives the rest of the deposit back
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent', 'confirmed', 'failed')),
    tx_hash TEXT,
    block_number INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT,
    next_attempt_at_ms INTEGER NOT NULL DEFAULT 0,
    updated_at_ms INTEGER NOT NULL
  );

  CREATE TABLE peers (
    address TEXT PRIMARY KEY,           -- lower-case Ethereum address of the peer's key
    peer_id TEXT NOT NULL,
    multiaddrs TEXT NOT NULL DEFAULT '[]',
    updated_at_ms INTEGER NOT NULL
  );
  `,
  // 7: the services a requestor node owns, so that it takes them up again after a restart: each service's spec, its
  // packages (as files beside the database) and its replicas (placement and activity), as one JSON document.
  `
  CREATE TABLE services (
    name TEXT PRIMARY KEY,
    document TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
  );
  `,
]
