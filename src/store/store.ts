/** A node's store: its database plus one repository per aggregate. */
import { createActivityRepository } from './activity-repository.ts'
import { openDatabase, type Db } from './database.ts'
import { createServiceRepository } from './service-repository.ts'
import { createWriteBehind } from './write-behind.ts'
import {
  createAgreementRepository,
  createClaimRepository,
  createEscrowRepository,
  createJobRepository,
  createPaymentDocumentRepository,
  createPeerRepository,
  createProviderReputationRepository,
  createTaskResultRepository,
  createVoucherRepository,
} from './repositories.ts'

export interface Store {
  db: Db
  agreements: ReturnType<typeof createAgreementRepository>
  escrows: ReturnType<typeof createEscrowRepository>
  vouchers: ReturnType<typeof createVoucherRepository>
  taskResults: ReturnType<typeof createTaskResultRepository>
  paymentDocuments: ReturnType<typeof createPaymentDocumentRepository>
  jobs: ReturnType<typeof createJobRepository>
  providerReputation: ReturnType<typeof createProviderReputationRepository>
  activities: ReturnType<typeof createActivityRepository>
  claims: ReturnType<typeof createClaimRepository>
  peers: ReturnType<typeof createPeerRepository>
  services: ReturnType<typeof createServiceRepository>
  /** Runs the writes made `…Soon` now (see write-behind.ts). */
  flush(): void
  close(): void
}

export function openStore(init: { path: string }): Store {
  const db = openDatabase(init)
  const writes = createWriteBehind(db)
  return {
    db,
    agreements: createAgreementRepository(db),
    escrows: createEscrowRepository(db),
    vouchers: createVoucherRepository(db),
    taskResults: createTaskResultRepository(db, writes),
    paymentDocuments: createPaymentDocumentRepository(db, writes),
    jobs: createJobRepository(db),
    providerReputation: createProviderReputationRepository(db, writes),
    activities: createActivityRepository(db),
    claims: createClaimRepository(db),
    peers: createPeerRepository(db),
    services: createServiceRepository(db),
    flush: () => writes.flush(),
    close: () => {
      try {
        writes.flush()
      } finally {
        db.close()
      }
    },
  }
}
