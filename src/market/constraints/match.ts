/**
 * Two-sided matching of a demand and an offer, as yagna's `match_weak` (core/market/resolver/src/resolver/matching.rs):
 * the demand's constraints are evaluated against the offer's properties and the offer's constraints against the
 * demand's properties.
 *
 * The two answers combine as Kleene's `&`: `yes` only when both are true, `no` when either is false, `undefined`
 * otherwise. yagna answers Undefined whenever either side is undefined, even when the other is false; we answer `no`
 * then, because a false side stays false whatever the undefined side later learns, so the pair can never match and a
 * negotiator should not spend a round on it.
 */
import { compileConstraints } from './evaluate.ts'
import type { ConstraintsInput } from './evaluate.ts'
import type { Properties, PropertyTypes } from './properties.ts'

export interface MarketSide {
  /** Flattened properties (see flattenProperties). */
  properties: Properties
  /** Filter text, an AST or compiled constraints; empty text means no constraints. */
  constraints: ConstraintsInput
  /** Declared types of this side's properties, applied when the other side's constraints read them. */
  types?: PropertyTypes
}

export type MatchResult = 'yes' | 'no' | 'undefined'

export function matchDemandOffer(demand: MarketSide, offer: MarketSide): MatchResult {
  // Both compiled before either is evaluated, so a malformed filter is reported whatever the other side answers.
  const demandConstraints = compileConstraints(demand.constraints)
  const offerConstraints = compileConstraints(offer.constraints)
  const demandSays = demandConstraints.evaluate(offer.properties, offer.types)
  if (demandSays === false) return 'no'
  const offerSays = offerConstraints.evaluate(demand.properties, demand.types)
  if (offerSays === false) return 'no'
  return demandSays === true && offerSays === true ? 'yes' : 'undefined'
}
