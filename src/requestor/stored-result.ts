/**
 * What the requestor keeps of each accepted result (task_results.document): the provider's signed answer that carries
 * it. A task sent alone keeps its own signed result; a task sent in a batch keeps the batch's signed answer and its
 * place in it, since the provider's one signature covers every result of the batch. Either way the stored document
 * proves what the provider answered, and these functions read it back.
 */
import type { Address } from 'viem'
import type { BatchAnswer, TaskResult } from '../exec/task-protocols.ts'
import { HearthError } from '../errors.ts'
import { verifySigned, type Signed } from '../identity/signed.ts'

export type StoredResult = Signed<TaskResult> | { batch: Signed<{ answers: BatchAnswer[] }>; index: number }

/** The result in a stored document, unverified (it was verified when it was accepted). */
export function storedTaskResult(document: unknown): TaskResult {
  const stored = document as StoredResult
  if ('batch' in stored) {
    const answer = stored.batch.payload.answers[stored.index]
    if (answer === undefined || !answer.ok) throw new HearthError('HEARTH_ERR_STORE_MIGRATION', `a stored batch answer has no result at ${stored.index}: the database does not hold what this Hearth wrote`)
    return answer.result
  }
  return stored.payload
}

/** Checks the provider's signature over a stored document and returns the result it binds. */
export async function verifyStoredResult(document: unknown, provider: Address): Promise<TaskResult> {
  const stored = document as StoredResult
  if ('batch' in stored) {
    await verifySigned(stored.batch, { expectedSigner: provider })
    return storedTaskResult(stored)
  }
  return verifySigned(stored, { expectedSigner: provider })
}
