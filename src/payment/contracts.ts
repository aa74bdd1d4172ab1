/**
 * The compiled contracts (build/contracts.json, written by scripts/build-contracts.ts) with their ABIs typed loosely
 * as viem's `Abi`: the ABIs are runtime data, so calls are checked at runtime (by viem's encoder), not by tsc.
 */
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Abi, Hex } from 'viem'
import { HearthError } from '../errors.ts'

export interface ContractArtifact {
  abi: Abi
  bytecode: Hex
}

export interface HearthContracts {
  HearthToken: ContractArtifact
  HearthEscrow: ContractArtifact
}

export const contractsJsonPath = fileURLToPath(new URL('../../build/contracts.json', import.meta.url))

let cached: HearthContracts | undefined

/** Reads build/contracts.json once per process. */
export function loadContracts(): HearthContracts {
  if (cached !== undefined) return cached
  let parsed: Partial<Record<keyof HearthContracts, Partial<ContractArtifact>>>
  try {
    parsed = JSON.parse(readFileSync(contractsJsonPath, 'utf8')) as typeof parsed
  } catch (error) {
    throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `the compiled contracts are missing or unreadable (${contractsJsonPath})`, {
      hint: 'run npm run build',
      cause: error,
    })
  }
  for (const name of ['HearthToken', 'HearthEscrow'] as const) {
    const artifact = parsed[name]
    if (!Array.isArray(artifact?.abi) || typeof artifact.bytecode !== 'string' || !artifact.bytecode.startsWith('0x')) {
      throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `build/contracts.json has no valid ${name} artifact`, {
        hint: 'run npm run build',
      })
    }
  }
  cached = parsed as HearthContracts
  return cached
}

export function hearthTokenAbi(): Abi {
  return loadContracts().HearthToken.abi
}

export function hearthEscrowAbi(): Abi {
  return loadContracts().HearthEscrow.abi
}

export const testContractsJsonPath = fileURLToPath(new URL('../../build/test-contracts.json', import.meta.url))

/** A contract from contracts/test/ (build/test-contracts.json): hostile doubles that only tests deploy. */
export function loadTestContract(name: string): ContractArtifact {
  let parsed: Record<string, Partial<ContractArtifact>>
  try {
    parsed = JSON.parse(readFileSync(testContractsJsonPath, 'utf8')) as typeof parsed
  } catch (error) {
    throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `the compiled test contracts are missing or unreadable (${testContractsJsonPath})`, {
      hint: 'run npm run build',
      cause: error,
    })
  }
  const artifact = parsed[name]
  if (!Array.isArray(artifact?.abi) || typeof artifact.bytecode !== 'string') {
    throw new HearthError('HEARTH_ERR_PAYMENT_CHAIN', `build/test-contracts.json has no ${name}`, { hint: 'run npm run build' })
  }
  return artifact as ContractArtifact
}
