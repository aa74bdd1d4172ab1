/**
 * XML as the S3 endpoint (s3-server.ts) speaks it: answers written with escaping, and a small, strict parser for the
 * few documents clients send (CompleteMultipartUpload, Delete, CreateBucketConfiguration). The parser takes text whose
 * size the caller bounded, nests at most 16 deep, knows only XML's five named entities and character references, and
 * refuses any DOCTYPE, so no entity expansion or external reference can be smuggled in.
 */
import { S3Error } from './s3-errors.ts'

export const s3Namespace = 'http://s3.amazonaws.com/doc/2006-03-01/'

/** Text escaped for XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!)
}

/** `<name>text</name>`, escaped; nothing when `text` is undefined. */
export function element(name: string, text: string | number | boolean | undefined): string {
  return text === undefined ? '' : `<${name}>${escapeXml(String(text))}</${name}>`
}

/** A whole S3 answer: the declaration and `root` in S3's namespace around `inner`. */
export function document(root: string, inner: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${root} xmlns="${s3Namespace}">${inner}</${root}>`
}

/** S3's error document. */
export function errorDocument(code: string, message: string, resource: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error>${element('Code', code)}${element('Message', message)}${element('Resource', resource)}${element('RequestId', requestId)}</Error>`
}

/** An ISO 8601 time with milliseconds, as S3 lists times. */
export const isoTime = (ms: number): string => new Date(ms).toISOString()

/** A parsed element: its local name (any namespace prefix dropped), child elements and text. */
export interface XmlElement {
  name: string
  children: XmlElement[]
  text: string
}

const maxDepth = 16
/** A character outside XML's Char production (a lone surrogate included). */
const notXmlChar = /[^\t\n\r\x20-\uD7FF\uE000-\uFFFD\u{10000}-\u{10FFFF}]/u
const namedEntities: Record<string, string> = { lt: '<', gt: '>', amp: '&', quot: '"', apos: "'" }

const malformed = (what: string): S3Error =>
  new S3Error('MalformedXML', `The XML you provided was not well-formed or did not validate against our published schema: ${what}.`)

function isXmlChar(code: number): boolean {
  return code === 0x9 || code === 0xa || code === 0xd || (code >= 0x20 && code <= 0xd7ff) || (code >= 0xe000 && code <= 0xfffd) || (code >= 0x10000 && code <= 0x10ffff)
}

function decodeText(raw: string): string {
  return raw.replace(/&([^;&]{0,10});?/g, (match, name: string) => {
    if (!match.endsWith(';')) throw malformed('an "&" that starts no entity')
    if (name.startsWith('#')) {
      const code = name[1] === 'x' ? Number.parseInt(name.slice(2), 16) : Number.parseInt(name.slice(1), 10)
      if (!/^#(x[0-9a-fA-F]+|[0-9]+)$/.test(name) || !isXmlChar(code)) throw malformed(`the character reference &${name}; is not a valid XML character`)
      return String.fromCodePoint(code)
    }
    const named = namedEntities[name]
    if (named === undefined) throw malformed(`the entity &${name}; is not one of XML's five`)
    return named
  })
}

const localName = (qualified: string): string => qualified.slice(qualified.indexOf(':') + 1)

/** Where a markup construct at `at` ends, past `terminator`. */
function skipPast(text: string, at: number, terminator: string, what: string): number {
  const end = text.indexOf(terminator, at)
  if (end < 0) throw malformed(`an unterminated ${what}`)
  return end + terminator.length
}

/** Reads the tag at `at` (just past "<"): its name, whether it closes itself, and where it ends. */
function readTag(text: string, at: number): { name: string; selfClosing: boolean; end: number } {
  const close = text.indexOf('>', at)
  if (close < 0) throw malformed('an unterminated tag')
  const body = text.slice(at, close)
  const match = /^([A-Za-z_][\w.:-]*)(\s[^<]*)?$/s.exec(body.endsWith('/') ? body.slice(0, -1) : body)
  if (match === null) throw malformed(`the tag <${body.slice(0, 40)}> is not well-formed`)
  return { name: localName(match[1]!), selfClosing: body.endsWith('/'), end: close + 1 }
}

/** Parses a document into its root element. Throws MalformedXML for anything but plain, well-formed XML. */
export function parseXml(text: string): XmlElement {
  if (notXmlChar.test(text)) throw malformed('it holds a character XML does not allow')
  const stack: XmlElement[] = []
  let root: XmlElement | undefined
  let at = text.charCodeAt(0) === 0xfeff ? 1 : 0
  while (at < text.length) {
    const open = text.indexOf('<', at)
    const raw = text.slice(at, open < 0 ? text.length : open)
    if (stack.length > 0) stack[stack.length - 1]!.text += decodeText(raw)
    else if (raw.trim() !== '') throw malformed('text outside the root element')
    if (open < 0) break
    if (text.startsWith('<?', open)) at = skipPast(text, open, '?>', 'processing instruction')
    else if (text.startsWith('<!--', open)) at = skipPast(text, open, '-->', 'comment')
    else if (text.startsWith('<![CDATA[', open)) {
      at = skipPast(text, open, ']]>', 'CDATA section')
      if (stack.length === 0) throw malformed('a CDATA section outside the root element')
      stack[stack.length - 1]!.text += text.slice(open + 9, at - 3)
    } else if (text.startsWith('<!', open)) throw malformed('document type declarations are not allowed')
    else if (text.startsWith('</', open)) {
      const end = skipPast(text, open, '>', 'closing tag')
      const name = localName(text.slice(open + 2, end - 1).trim())
      const top = stack.pop()
      if (top === undefined || top.name !== name) throw malformed(`the closing tag </${name.slice(0, 40)}> does not match`)
      at = end
    } else {
      const tag = readTag(text, open + 1)
      const node: XmlElement = { name: tag.name, children: [], text: '' }
      if (stack.length > 0) stack[stack.length - 1]!.children.push(node)
      else if (root === undefined) root = node
      else throw malformed('more than one root element')
      if (!tag.selfClosing) stack.push(node)
      if (stack.length > maxDepth) throw malformed(`elements nest deeper than ${maxDepth}`)
      at = tag.end
    }
  }
  if (root === undefined) throw malformed('there is no root element')
  if (stack.length > 0) throw malformed(`the element <${stack[stack.length - 1]!.name}> is not closed`)
  return root
}

/** The children of `parent` named `name`. */
export const childrenNamed = (parent: XmlElement, name: string): XmlElement[] => parent.children.filter((child) => child.name === name)

/** The text of the first child of `parent` named `name`; undefined when there is none. */
export const childText = (parent: XmlElement, name: string): string | undefined => parent.children.find((child) => child.name === name)?.text

/** Parses `text` and checks that its root is `rootName`. */
export function parseDocument(text: string, rootName: string): XmlElement {
  const root = parseXml(text)
  if (root.name !== rootName) throw malformed(`the root element is <${root.name.slice(0, 40)}>, expected <${rootName}>`)
  return root
}
