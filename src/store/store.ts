/** A node's store: its database plus one repository per aggregate. */
import { createActivityRepository } from './activity-repository.ts'
import { openDatabase, type Db } from './database.ts'
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
  close(): void
}

export function openStore(init: { path: string }): Store {
  const db = openDatabase(init)
  return {
    db,
    agreements: createAgreementRepository(db),
    escrows: createEscrowRepository(db),
    vouchers: createVoucherRepository(db),
    taskResults: createTaskResultRepository(db),
    paymentDocuments: createPaymentDocumentRepository(db),
    jobs: createJobRepository(db),
    providerReputation: createProviderReputationRepository(db),
    activities: createActivityRepository(db),
    claims: createClaimRepository(db),
    peers: createPeerRepository(db),
    close: () => db.close(),
  }
}
