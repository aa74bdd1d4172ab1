/**
 * The client of the node's local API: `POST /v1/<command>` with the key as a bearer token and an optional JSON body.
 * An answer is `{ ok: true, result }` or `{ ok: false, error: { code, message, hint? } }`; a refusal becomes an
 * ApiError. `GET /openapi.json` (no key) says which node this is and which commands it has.
 */

/** A refusal of the API, or a failure to reach it. */
export class ApiError extends Error {
  readonly code: string
  readonly hint: string | undefined
  readonly status: number

  constructor(code: string, message: string, hint: string | undefined, status: number) {
    super(message)
    this.name = 'ApiError'
    this.code = code
    this.hint = hint
    this.status = status
  }
}

export type NodeKind = 'requestor' | 'provider'

/** What the OpenAPI document tells the dashboard: the node's kind and its commands. */
export interface NodeDescription {
  kind: NodeKind
  title: string
  commands: Set<string>
}

export interface Api {
  call<T>(command: string, body?: object): Promise<T>
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value)
}

function refusalOf(answer: unknown, status: number): ApiError {
  const error = isRecord(answer) && isRecord(answer['error']) ? answer['error'] : undefined
  const code = typeof error?.['code'] === 'string' ? error['code'] : `HTTP_${status}`
  const message = typeof error?.['message'] === 'string' ? error['message'] : `The node answered with HTTP status ${status}.`
  const hint = typeof error?.['hint'] === 'string' ? error['hint'] : undefined
  return new ApiError(code, message, hint, status)
}

async function readJson(response: Response): Promise<unknown> {
  try {
    return (await response.json()) as unknown
  } catch {
    return undefined
  }
}

const unreachable = (): ApiError =>
  new ApiError('HEARTH_DASHBOARD_UNREACHABLE', 'The node does not answer.', 'Is it still running? Start it again and reopen the dashboard with hearth ui.', 0)

/** A client that sends every command with `key`. */
export function createApi(key: string): Api {
  return {
    async call<T>(command: string, body?: object): Promise<T> {
      let response: Response
      try {
        response = await fetch(`/v1/${encodeURIComponent(command)}`, {
          method: 'POST',
          headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          cache: 'no-store',
        })
      } catch {
        throw unreachable()
      }
      const answer = await readJson(response)
      if (response.ok && isRecord(answer) && answer['ok'] === true) return answer['result'] as T
      throw refusalOf(answer, response.status)
    },
  }
}

/** Reads `GET /openapi.json`: the node's kind from `info.title`, its commands from `paths`. */
export async function describeNode(): Promise<NodeDescription> {
  let response: Response
  try {
    response = await fetch('/openapi.json', { cache: 'no-store' })
  } catch {
    throw unreachable()
  }
  const document = await readJson(response)
  if (!response.ok || !isRecord(document)) throw new ApiError(`HTTP_${response.status}`, 'The node did not describe its API.', undefined, response.status)
  const info = isRecord(document['info']) ? document['info'] : {}
  const title = typeof info['title'] === 'string' ? info['title'] : 'Hearth node'
  const paths = isRecord(document['paths']) ? Object.keys(document['paths']) : []
  const commands = new Set(paths.filter((path) => path.startsWith('/v1/')).map((path) => path.slice('/v1/'.length)))
  return { kind: /provider/i.test(title) ? 'provider' : 'requestor', title, commands }
}

/** The user-facing text of any failure. */
export function toApiError(error: unknown): ApiError {
  if (error instanceof ApiError) return error
  return new ApiError('HEARTH_DASHBOARD_ERROR', error instanceof Error ? error.message : String(error), undefined, 0)
}
