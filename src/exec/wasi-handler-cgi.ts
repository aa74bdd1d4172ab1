/**
 * The CGI side of a WASI request handler (wasi-handler.ts), after RFC 3875 and WAGI: the request as environment
 * variables, and the handler's stdout read back as a CGI response (header lines, a blank line, the body).
 */
import type { IncomingMessage } from 'node:http'

/** Request headers passed as HTTP_* variables: at most this many, and this many bytes of names and values in all. */
export const maxCgiHeaders = 100
export const maxCgiHeaderBytes = 32 << 10
/** The response's header section may hold at most this many bytes and lines. */
const maxResponseHeaderBytes = 64 << 10
const maxResponseHeaderLines = 100

/** The environment of one request, or why the request cannot be passed on (an HTTP status and a message). */
export type CgiRequest = { ok: true; env: Record<string, string> } | { ok: false; status: number; message: string }

/**
 * The CGI meta-variables of `request` (whose body has `bodyBytes` bytes), over `baseEnv` (the service's own
 * environment): REQUEST_METHOD, PATH_INFO (percent-decoded; X_RAW_PATH_INFO as sent), QUERY_STRING, CONTENT_TYPE,
 * CONTENT_LENGTH, SERVER_PROTOCOL, SCRIPT_NAME (empty: the handler serves the whole path space), SERVER_NAME and
 * SERVER_PORT from the Host header, GATEWAY_INTERFACE, and one HTTP_* variable per other header.
 * Proxy is left out (httpoxy: a handler's HTTP library would take HTTP_PROXY as its proxy).
 */
export function cgiEnvironment(request: IncomingMessage, bodyBytes: number, baseEnv: Record<string, string>): CgiRequest {
  const target = request.url ?? '/'
  const queryAt = target.indexOf('?')
  const rawPath = queryAt < 0 ? target : target.slice(0, queryAt)
  let path: string
  try {
    path = decodeURIComponent(rawPath)
  } catch {
    return { ok: false, status: 400, message: 'the request path is not valid percent-encoding' }
  }
  if (!path.startsWith('/') || path.includes('\0')) return { ok: false, status: 400, message: 'the request path must start with / and hold no NUL' }

  const headers: Record<string, string> = {}
  let count = 0
  let bytes = 0
  const raw = request.rawHeaders
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = raw[i]!.toLowerCase()
    if (name === 'content-type' || name === 'content-length' || name === 'proxy' || name === 'transfer-encoding') continue
    const key = 'HTTP_' + name.toUpperCase().replaceAll('-', '_')
    count++
    bytes += key.length + raw[i + 1]!.length
    if (count > maxCgiHeaders || bytes > maxCgiHeaderBytes) {
      return { ok: false, status: 431, message: `a request may pass at most ${maxCgiHeaders} headers, ${maxCgiHeaderBytes} bytes in all, to the handler` }
    }
    // Repeated headers join as one list, as RFC 3875 asks.
    headers[key] = headers[key] === undefined ? raw[i + 1]! : `${headers[key]}, ${raw[i + 1]!}`
  }
  const host = request.headers.host ?? 'localhost'
  const portAt = host.lastIndexOf(':')
  const hasPort = portAt > host.lastIndexOf(']')
  const env: Record<string, string> = {
    ...headers,
    ...baseEnv,
    GATEWAY_INTERFACE: 'CGI/1.1',
    SERVER_SOFTWARE: 'hearth-wasi-handler',
    SERVER_PROTOCOL: `HTTP/${request.httpVersion}`,
    SERVER_NAME: hasPort ? host.slice(0, portAt) : host,
    SERVER_PORT: hasPort ? host.slice(portAt + 1) : '80',
    REQUEST_METHOD: request.method ?? 'GET',
    SCRIPT_NAME: '',
    PATH_INFO: path,
    X_RAW_PATH_INFO: rawPath,
    QUERY_STRING: queryAt < 0 ? '' : target.slice(queryAt + 1),
    REQUEST_URI: target,
  }
  if (bodyBytes > 0 || request.headers['content-length'] !== undefined) env.CONTENT_LENGTH = String(bodyBytes)
  if (request.headers['content-type'] !== undefined) env.CONTENT_TYPE = request.headers['content-type']
  for (const [key, value] of Object.entries(env)) {
    // A variable holding NUL cannot reach the guest; node's parser refuses such headers already.
    if (value.includes('\0')) delete env[key]
  }
  return { ok: true, env }
}

/** A handler's output read as a CGI response, or why it is not one. */
export type CgiResponse =
  | { ok: true; status: number; statusText: string | undefined; headers: [string, string][]; body: Uint8Array }
  | { ok: false; message: string }

const headerName = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
// Visible ASCII, spaces and tabs, and bytes from 0x80 (obs-text): no control characters.
const headerValue = /^[\t\x20-\x7e\x80-\xff]*$/

/**
 * Parses a CGI response: header lines ending in LF or CRLF, a blank line, the body. `Status: NNN reason` sets the
 * status; `Location` without Status is a 302 redirect; a response needs Content-Type, Location or Status. Anything
 * else (no blank line, a line without a colon, a bad name or value, too large a header section) is not a response.
 */
export function parseCgiResponse(output: Uint8Array): CgiResponse {
  const bytes = Buffer.from(output.buffer, output.byteOffset, output.byteLength)
  const limit = Math.min(bytes.length, maxResponseHeaderBytes + 4)
  let end = -1
  let bodyAt = -1
  for (let i = 0; i < limit; i++) {
    if (bytes[i] !== 0x0a) continue
    // A line that is empty, or holds only CR, ends the header section (`end`: where the last header line ends).
    if (i === 0 || bytes[i - 1] === 0x0a) end = Math.max(0, i - 1)
    else if (bytes[i - 1] === 0x0d && (i === 1 || bytes[i - 2] === 0x0a)) end = Math.max(0, i - 2)
    else continue
    bodyAt = i + 1
    break
  }
  if (end < 0) {
    return {
      ok: false,
      message: bytes.length > maxResponseHeaderBytes
        ? `the handler's response has no end of its header section within ${maxResponseHeaderBytes} bytes`
        : 'the handler\'s output is not a CGI response: it has no blank line ending a header section',
    }
  }
  const lines = bytes.toString('latin1', 0, end).split('\n').map((line) => (line.endsWith('\r') ? line.slice(0, -1) : line))
  if (end === 0) lines.length = 0
  if (lines.length > maxResponseHeaderLines) return { ok: false, message: `the handler's response has more than ${maxResponseHeaderLines} header lines` }
  let status: number | undefined
  let statusText: string | undefined
  const headers: [string, string][] = []
  for (const line of lines) {
    const colon = line.indexOf(':')
    const name = colon < 0 ? '' : line.slice(0, colon).trim()
    const value = colon < 0 ? '' : line.slice(colon + 1).trim()
    if (!headerName.test(name) || !headerValue.test(value)) {
      return { ok: false, message: `the handler's response has a malformed header line: ${JSON.stringify(line.slice(0, 80))}` }
    }
    const lower = name.toLowerCase()
    if (lower === 'status') {
      const match = /^([1-5][0-9][0-9])(?: (.*))?$/.exec(value)
      if (match === null || Number(match[1]) < 200) return { ok: false, message: `the handler's Status header is not a final status: ${JSON.stringify(value.slice(0, 80))}` }
      status = Number(match[1])
      statusText = match[2] === undefined || match[2] === '' ? undefined : match[2]
    } else if (lower === 'content-length' || lower === 'transfer-encoding' || lower === 'connection') {
      // The server frames the body itself.
      continue
    } else {
      headers.push([name, value])
    }
  }
  const has = (wanted: string): boolean => headers.some(([name]) => name.toLowerCase() === wanted)
  if (status === undefined && !has('content-type') && !has('location')) {
    return { ok: false, message: 'the handler\'s response has none of Content-Type, Location and Status' }
  }
  return { ok: true, status: status ?? (has('location') ? 302 : 200), statusText, headers, body: output.subarray(bodyAt) }
}
