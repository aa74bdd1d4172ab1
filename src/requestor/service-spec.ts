/**
 * A service: a server run as replicas on providers, kept healthy by its owner's node and reached through gateways.
 * This is what the owner asks for, checked whole before anything is placed; `hearth service deploy` reads it from a
 * service file (JSON) where paths are relative to the file.
 */
import { z } from 'zod'
import { HearthError } from '../errors.ts'
import { describeIssues } from '../net/describe-issues.ts'

const decimalWei = z.string().regex(/^[0-9]+$/, 'expected an amount in wei as a decimal string')
const address = z.string().regex(/^0x[0-9a-fA-F]{40}$/, 'expected an address 0x and 40 hex digits')

export const serviceSpecSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9-]{0,62}$/, 'expected lower-case letters, digits and dashes, e.g. my-site'),
  /** A version label of the package (shown in the x-hearth-version header); an update names a new one. */
  version: z.string().min(1).max(100).default('1'),
  runtime: z.enum(['docker', 'native', 'wasi'], { message: 'expected "docker", "native" or "wasi"' }),
  /** docker: the image id; its archive is `archive`, served to providers that lack the image. */
  imageId: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'expected an image id sha256:<64 hex digits>').optional(),
  /** native: a program the providers offer; wasi: unused. */
  program: z.string().regex(/^[A-Za-z0-9._+-]{1,100}$/).optional(),
  /** The TCP port the server listens on inside its replica's own network namespace; `${PORT}` in args becomes it. */
  port: z.number().int().min(1).max(65_535).default(8080),
  args: z.array(z.string().max(4096)).max(1024).default([]),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string().max(4096)).default({}),
  /** Replicas per region (`{ "eu": 1, "us": 1 }`), or in total where any region will do. */
  replicas: z.union([
    z.strictObject({ total: z.number().int().min(1).max(64) }),
    z.strictObject({ perRegion: z.record(z.string().regex(/^[a-z0-9-]{1,32}$/), z.number().int().min(1).max(16)) }),
  ]).default({ total: 1 }),
  health: z.strictObject({
    path: z.string().regex(/^\/[^\s]*$/, 'expected an HTTP path such as /healthz').max(2000).default('/'),
    intervalMs: z.number().int().min(200).max(600_000).default(5_000),
    timeoutMs: z.number().int().min(100).max(60_000).default(2_000),
    failuresBeforeDown: z.number().int().min(1).max(100).default(2),
  }).default({ path: '/', intervalMs: 5_000, timeoutMs: 2_000, failuresBeforeDown: 2 }),
  /** The owner's conditions on offers, in the constraint language. */
  constraints: z.string().max(64 * 1024).optional(),
  /** The most one replica's agreement may cost an hour of uptime (linear prices: duration plus one core of CPU). */
  maxPricePerHourWei: decimalWei.optional(),
  /** How long each agreement runs before it is renewed (default a day). */
  agreementSec: z.number().int().min(90, 'expected at least 90 s: providers take no agreement that ends within a minute').max(30 * 86_400).default(86_400),
  /**
   * How much uptime each replica's escrow holds ahead of what was metered (default an hour): it opens with twice
   * that and is topped up as the service runs, so no more than about two and a half times it is locked at once.
   */
  escrowAheadSec: z.number().int().min(30, 'expected at least 30 s: a top-up must have time to land').max(86_400).default(3_600),
  /** Gateways besides the owner's node that may connect to the replicas, by their node address. */
  gateways: z.array(address).max(64).default([]),
})

export type ServiceSpec = z.output<typeof serviceSpecSchema>
export type ServiceSpecInput = z.input<typeof serviceSpecSchema>

/** Checks a service spec whole; every problem names its field. */
export function parseServiceSpec(value: unknown): ServiceSpec {
  const parsed = serviceSpecSchema.safeParse(value)
  if (!parsed.success) {
    throw new HearthError('HEARTH_ERR_SERVICE_INVALID', `the service is not valid: ${describeIssues(parsed.error).text}`, { hint: 'fix the fields named and deploy again' })
  }
  const spec = parsed.data
  if (spec.runtime === 'docker' && spec.imageId === undefined) {
    throw new HearthError('HEARTH_ERR_SERVICE_INVALID', 'the service is not valid: imageId: a docker service names its image', { hint: 'give imageId (sha256:…) and its archive' })
  }
  if (spec.runtime === 'native' && spec.program === undefined) {
    throw new HearthError('HEARTH_ERR_SERVICE_INVALID', 'the service is not valid: program: a native service names an offered program')
  }
  return spec
}

/** The regions of the replicas a spec asks for, one entry per replica (undefined: any region). */
export function replicaSlots(spec: ServiceSpec): (string | undefined)[] {
  if ('total' in spec.replicas) return Array.from({ length: spec.replicas.total }, () => undefined)
  return Object.entries(spec.replicas.perRegion).flatMap(([region, count]) => Array.from({ length: count }, () => region))
}
