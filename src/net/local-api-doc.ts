/**
 * The OpenAPI 3.1 document of a node's local API, made from its command table: each command's body and result
 * schemas (zod, as JSON Schema 2020-12), the answer envelope, the refusals, the key (bearer), metrics and the event
 * WebSocket. Served at `GET /openapi.json`; tests check real answers against it.
 */
import { z } from 'zod'
import type { ApiCommandSpec, LocalApiKind, LocalApiWeb } from './local-api-types.ts'

type JsonSchema = Record<string, unknown>

/** The formats JSON Schema 2020-12 defines; zod also writes its own (`starts_with`, `includes`), beside a pattern. */
const standardFormats = new Set(['date-time', 'date', 'time', 'duration', 'email', 'idn-email', 'hostname', 'idn-hostname', 'ipv4', 'ipv6', 'uri', 'uri-reference', 'iri', 'iri-reference', 'uuid', 'uri-template', 'json-pointer', 'relative-json-pointer', 'regex'])

/** Drops formats no validator knows, in place, everywhere in a schema. */
function dropOwnFormats(node: unknown): void {
  if (Array.isArray(node)) {
    for (const item of node) dropOwnFormats(item)
    return
  }
  if (typeof node !== 'object' || node === null) return
  const record = node as Record<string, unknown>
  if (typeof record['format'] === 'string' && !standardFormats.has(record['format'])) delete record['format']
  for (const value of Object.values(record)) dropOwnFormats(value)
}

function schemaOf(schema: z.ZodType, io: 'input' | 'output'): JsonSchema {
  const json = z.toJSONSchema(schema, { target: 'draft-2020-12', io, unrepresentable: 'any' }) as JsonSchema
  delete json['$schema']
  dropOwnFormats(json)
  return json
}

const errorEnvelope: JsonSchema = {
  type: 'object',
  required: ['ok', 'error'],
  properties: {
    ok: { const: false },
    error: {
      type: 'object',
      required: ['code', 'message'],
      properties: { code: { type: 'string', pattern: '^HEARTH_ERR_' }, message: { type: 'string' }, hint: { type: 'string' } },
    },
  },
}

function okEnvelope(result: JsonSchema): JsonSchema {
  return { type: 'object', required: ['ok', 'result'], properties: { ok: { const: true }, result } }
}

const errorResponse = (description: string) => ({ description, content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } } })

function operation(name: string, spec: ApiCommandSpec<never>): JsonSchema {
  return {
    post: {
      operationId: name.replace(/-([a-z0-9])/g, (_m, c: string) => c.toUpperCase()),
      summary: spec.summary,
      ...(spec.body === undefined
        ? {}
        : { requestBody: { required: true, content: { 'application/json': { schema: schemaOf(spec.body, 'input') } } } }),
      responses: {
        200: { description: 'done', content: { 'application/json': { schema: okEnvelope(schemaOf(spec.result, 'output')) } } },
        400: errorResponse('the body does not match the schema, or the command refused the caller\'s request (the error says what to fix)'),
        401: errorResponse('no key, or a wrong one'),
        403: errorResponse('a foreign Host or Origin'),
        413: errorResponse('the body is too large'),
        500: errorResponse('the command failed on the node\'s side: the error says why and what to do'),
      },
    },
  }
}

export function openApiDocument(init: { kind: LocalApiKind; commands: Record<string, ApiCommandSpec<never>>; url: string; web?: LocalApiWeb | undefined }): JsonSchema {
  const paths: Record<string, JsonSchema> = {}
  for (const [name, spec] of Object.entries(init.commands)) paths[`/v1/${name}`] = operation(name, spec)
  if (init.web?.metrics !== undefined) {
    paths['/metrics'] = {
      get: {
        operationId: 'metrics',
        summary: 'the node\'s metrics in Prometheus\'s text format',
        responses: { 200: { description: 'metrics', content: { 'text/plain': { schema: { type: 'string' } } } }, 401: errorResponse('no key, or a wrong one') },
      },
    }
  }
  if (init.web?.events !== undefined) {
    paths['/v1/events'] = {
      get: {
        operationId: 'events',
        summary: 'the node\'s events as a WebSocket: send {"type":"auth","key":…} first; then {"type":"event","topic","atMs","data"} messages follow',
        security: [],
        responses: { 101: { description: 'switching to the WebSocket protocol' }, 403: errorResponse('a foreign Host or Origin') },
      },
    }
  }
  return {
    openapi: '3.1.0',
    info: { title: `Hearth ${init.kind.who} local API`, version: '1', description: `The ${init.kind.who}'s own API on 127.0.0.1; the key is in api.key in its data directory.` },
    servers: [{ url: init.url }],
    security: [{ key: [] }],
    paths,
    components: {
      securitySchemes: { key: { type: 'http', scheme: 'bearer', description: 'the content of api.key in the node\'s data directory' } },
      schemas: { Error: errorEnvelope },
    },
  }
}
