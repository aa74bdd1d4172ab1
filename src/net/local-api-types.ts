/**
 * The types a node's local API is made of: its kind (names and codes), its commands with their schemas, and what it
 * serves besides (files, metrics, events). The server is local-api-server.ts; the document made from these,
 * local-api-doc.ts.
 */
import type { z } from 'zod'
import type { ErrorCode } from '../errors.ts'
import type { EventFeed } from './local-api-web.ts'

/** What makes one node's local API its own: its commands, its record's name, and how its refusals read. */
export interface LocalApiKind {
  /** The node as messages name it: "provider", "requestor node". */
  who: string
  /** The record in the data directory: `provider.json`, `requestor.json`. */
  statusFile: string
  /** The command that starts such a node, for hints (`hearth provider start`). */
  startCommand: string
  /** The code of "no node answers here" (also that of a refused key) and of "the API cannot be served or found". */
  codes: { notRunning: ErrorCode; localApi: ErrorCode }
  /** The realm in the WWW-Authenticate challenge. */
  realm: string
}

/** One command: what it does, the schemas of its body and result (the OpenAPI document's), and its handler. */
export interface ApiCommandSpec<Body = Record<string, unknown>> {
  summary: string
  /** The JSON body, checked before `handle` sees it; none: the body must be empty or `{}`. */
  body?: z.ZodType<Body>
  /** What `handle` returns (with big integers as decimal strings): documents the answer, which tests check against it. */
  result: z.ZodType
  /** The code of a body that does not match (default HEARTH_ERR_NET_MESSAGE_INVALID). */
  invalidCode?: ErrorCode
  /** A larger body than the API's limit (uploads). */
  maxBodyBytes?: number
  handle(body: Body): Promise<unknown>
}

export type CommandTable = Record<string, ApiCommandSpec<never>>

/** A command with its body's type taken from its schema. */
export function command<Body extends Record<string, unknown>>(spec: ApiCommandSpec<Body>): ApiCommandSpec<never> {
  return spec as unknown as ApiCommandSpec<never>
}

/** What a node serves besides its commands: the dashboard's files, metrics and an event feed. */
export interface LocalApiWeb {
  /** The built dashboard (index.html and assets/); none: `GET /` is not found. */
  assetsDir?: string
  /** Prometheus text exposition. */
  metrics?(): string | Promise<string>
  events?: EventFeed
}

