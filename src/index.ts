/**
 * Hearth's public API: the package's main entry. Everything a program needs to run a network, lend a machine or rent
 * one is exported here; deeper paths are internal and may change.
 */
export { HearthError, errorCodes, errorInfo, errorRegistry, isErrorCode, isHearthError, type ErrorCode, type ErrorFault, type ErrorInfo, type ErrorRetry } from './errors.ts'

export { canonicalize, hashCanonical } from './identity/canonical-json.ts'
export { generateIdentity, identityFromPrivateKey, loadOrCreateIdentity, addressFromPeerId, type NodeIdentity } from './identity/node-identity.ts'
export { signPayload, verifySigned, type Signed } from './identity/signed.ts'

export { openStore, type Store } from './store/store.ts'

export { createHost, type Host, type HostInit } from './net/host.ts'
export { defineProtocol, type Protocol } from './net/protocol.ts'
export { defineStreamProtocol, serveStreamProtocol, openStream, type StreamProtocol, type StreamCall, type StreamServer } from './net/stream-protocol.ts'
export { defineBlobProtocol, serveBlobProtocol, requestBlob, type BlobProtocol } from './net/blob-protocol.ts'

export { createOffer, verifyOffer, offerId, OFFERS_TOPIC, type Offer, type SignedOffer } from './market/offer.ts'
export { createOfferBook, type OfferBook } from './market/offer-book.ts'
export { verifyAgreement, reviewProposal, reviewCounter, type Agreement, type AgreementTerms, type AgreementState, type ProviderPolicy } from './market/agreement.ts'
export { createMarketNode, type MarketNode } from './market/market-node.ts'
export { rankOffers, greatCircleKm, type StrategyWeights, type GeoPoint } from './market/strategy.ts'
export { slaConstraints, type Sla } from './market/sla.ts'
export { costWei, maxCostWei, maxTaskCostWei, pricingSchema, type Pricing, type Usage } from './market/pricing.ts'
export { parseConstraints } from './market/constraints/parser.ts'
export { formatConstraints } from './market/constraints/format.ts'
export { evaluateConstraints, compileConstraints, type CompiledConstraints, type ConstraintsInput, type ConstraintResult, type EvaluateOptions } from './market/constraints/evaluate.ts'
export { matchDemandOffer, type MarketSide, type MatchResult } from './market/constraints/match.ts'
export { flattenProperties, type Properties, type PropertyValue, type PropertyScalar, type PropertyTypes, type NestedProperties } from './market/constraints/properties.ts'
export { c, type KnownProperties, type EqualsOperand, type OrderOperand } from './market/constraints/builder.ts'
export type { ConstraintAst, PropertyRef, EqualsValue, ImpliedType, OrderOperator } from './market/constraints/ast.ts'

export { createWasiRuntime, type WasiRuntime, type WasiRunSpec, type WasiRunResult } from './exec/wasi-runtime.ts'
export { loadBuiltinWorkload } from './exec/workloads.ts'
export { sha256Hex, hashFile } from './exec/content-hash.ts'
export type { Runtime, RuntimeName, RunSpec, RunResult, RuntimeAvailability } from './exec/runtime.ts'
export { adaptWasiRuntime } from './exec/wasi-adapter.ts'
export { createNativeRuntime, type NativeRuntime, type NativeRuntimeInit } from './exec/native-runtime.ts'
export { detectGpus, type GpuInfo } from './exec/gpu.ts'
export { createDockerRuntime, type DockerRuntime, type DockerRuntimeInit, type DockerProgram } from './exec/docker-runtime.ts'
export { loadImageArchive, saveImageArchive, importRootfsArchive } from './exec/docker-images.ts'
export { createActivity as createActivityExecutor, activityStates, type Activity, type ActivityState, type ActivityUsage, type ExeCommand, type ExeEvent, type CommandResult } from './exec/exescript.ts'

export { createEmbeddedChain, serveChainHttp, type EmbeddedChain } from './payment/embedded-chain.ts'
export { createChainClient, type ChainClient } from './payment/chain-client.ts'
export { deployHearthContracts } from './payment/deploy.ts'
export { openEscrow, openEscrows, claimVoucher, claimVouchers, releaseEscrow, refundEscrow, getEscrow, tokenBalanceOf, mintTokens, approveEscrow, escrowKey, type EscrowContext } from './payment/escrow.ts'
export { signVoucher, verifyVoucher, type Voucher } from './payment/voucher.ts'

export { createProviderAgent, type ProviderAgent, type ProviderAgentInit } from './provider/provider-agent.ts'
export { createRequestor, type Requestor, type JobSpec, type TaskSpec, type TaskOutcome, type JobOutcome, type JobSession, type JobFigures, type BatchOutcome, type VerificationSpec } from './requestor/requestor.ts'
export { createReputationBook, type ReputationBook, type ProviderReputation, type ReputationOptions } from './requestor/reputation.ts'
export { dispatch, type DispatchInit, type DispatchOutcome } from './requestor/dispatch.ts'
export { negotiateMany, type NegotiateManyOptions, type NegotiateManyResult } from './requestor/negotiator.ts'
export { createActivity, type ActivityHandle, type ActivityAgreement, type ExecCall, type ExecOutcome } from './requestor/activity-client.ts'
export type { JobEvent } from './requestor/events.ts'

export { loadJobFile, parseJob, type LoadedJob } from './jobs/job-file.ts'
export { loadJobDefinition, parseJobDefinition, type JobDefinition, type JobKind } from './jobs/job-file.ts'
export { planJob, type JobPlan, type JobProduct, type PlanProgress, type TaskRunner } from './jobs/kinds.ts'
export { createLocalRunner, type LocalRunnerInit } from './requestor/local-runner.ts'
export { encodePng, decodePng } from './jobs/png.ts'

export { startDevnet, type Devnet } from './devnet/devnet.ts'
export { runDemo, type DemoReport } from './devnet/demo.ts'
export { runJobFile, type RunReport } from './cli/run-job.ts'
