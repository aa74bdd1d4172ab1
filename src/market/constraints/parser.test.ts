import assert from 'node:assert/strict'
import { test } from 'node:test'
import { HearthError, isHearthError } from '../../errors.ts'
import type { ConstraintAst } from './ast.ts'
import { parseConstraints, parsePropertyRef } from './parser.ts'

const eq = (name: string, ...pattern: string[]): ConstraintAst => ({ kind: 'equals', ref: { name }, value: { kind: 'text', pattern } })
const list = (name: string, ...items: string[][]): ConstraintAst => ({ kind: 'equals', ref: { name }, value: { kind: 'list', items } })
const and = (...children: ConstraintAst[]): ConstraintAst => ({ kind: 'and', children })
const or = (...children: ConstraintAst[]): ConstraintAst => ({ kind: 'or', children })
const not = (child: ConstraintAst): ConstraintAst => ({ kind: 'not', child })
const present = (name: string): ConstraintAst => ({ kind: 'present', ref: { name } })

/** Asserts a HearthError for `text` at `offset` whose reason matches `reason`, with a caret under the offset. */
function assertSyntaxError(text: string, offset: number, reason: RegExp): void {
  assert.throws(() => parseConstraints(text), (error: unknown) => {
    assert.ok(isHearthError(error, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'), String(error))
    assert.equal(error.details?.offset, offset, `offset for ${JSON.stringify(text)}: ${error.shortMessage}`)
    assert.match(String(error.details?.reason), reason)
    const [, line, caret] = error.shortMessage.split('\n')
    assert.equal(line!.slice(2)[caret!.indexOf('^') - 2], visibleAt(text, offset), 'the caret points at the offset')
    return true
  })
}

function visibleAt(text: string, offset: number): string | undefined {
  const ch = text[offset]
  // eslint-disable-next-line no-control-regex
  return ch === undefined ? undefined : ch.replace(/[\u0000-\u001f\u007f]/g, ' ')
}

test('parses the examples of GAP-34 (RFC 4515)', () => {
  assert.deepEqual(parseConstraints('(cn=Babs Jensen)'), eq('cn', 'Babs Jensen'))
  assert.deepEqual(parseConstraints('(!(cn=Tim Howes))'), not(eq('cn', 'Tim Howes')))
  assert.deepEqual(
    parseConstraints('(&(objectClass=Person)(|(sn=Jensen)(cn=Babs J*)))'),
    and(eq('objectClass', 'Person'), or(eq('sn', 'Jensen'), eq('cn', 'Babs J', ''))),
  )
  assert.deepEqual(parseConstraints('(o=univ*of*mich*)'), eq('o', 'univ', 'of', 'mich', ''))
})

test('decodes GAP-34 escapes: \\HH bytes, multi-byte UTF-8, and the older \\( \\) \\* \\\\', () => {
  assert.deepEqual(parseConstraints('(o=Parens R Us \\28for all your parenthetical needs\\29)'), eq('o', 'Parens R Us (for all your parenthetical needs)'))
  assert.deepEqual(parseConstraints('(cn=*\\2A*)'), eq('cn', '', '*', ''))
  assert.deepEqual(parseConstraints('(filename=C:\\5cMyFile)'), eq('filename', 'C:\\MyFile'))
  assert.deepEqual(parseConstraints('(bin=\\00\\00\\00\\04)'), eq('bin', '\u0000\u0000\u0000\u0004'))
  assert.deepEqual(parseConstraints('(sn=Lu\\c4\\8di\\c4\\87)'), eq('sn', 'Lučić'))
  assert.deepEqual(parseConstraints('(a=\\(x\\)\\*\\\\)'), eq('a', '(x)*\\'))
  assert.deepEqual(parseConstraints('(a>=\\2a)'), { kind: 'order', ref: { name: 'a' }, operator: '>=', value: '*' })
})

test('ignores whitespace between filters and around & | !, as yagna does', () => {
  assert.deepEqual(parseConstraints('( !   (cn=Tim Howes))'), not(eq('cn', 'Tim Howes')))
  assert.deepEqual(parseConstraints('( &  (a=b)  (b=c)  (c=d) )'), and(eq('a', 'b'), eq('b', 'c'), eq('c', 'd')))
  assert.deepEqual(
    parseConstraints('\n(&\n(golem.inf.mem.gib>0.5)\n(golem.inf.storage.gib>1)\n(golem.com.pricing.model=linear)\n(golem.node.debug.subnet=piotr)\n)'),
    and(
      { kind: 'order', ref: { name: 'golem.inf.mem.gib' }, operator: '>', value: '0.5' },
      { kind: 'order', ref: { name: 'golem.inf.storage.gib' }, operator: '>', value: '1' },
      eq('golem.com.pricing.model', 'linear'),
      eq('golem.node.debug.subnet', 'piotr'),
    ),
  )
  assert.deepEqual(parseConstraints('  \t(a=b)\n '), eq('a', 'b'))
})

test('keeps whitespace inside a value: it is part of what is compared', () => {
  assert.deepEqual(parseConstraints('(cn= x )'), eq('cn', ' x '))
  assert.deepEqual(parseConstraints('(cn=)'), eq('cn', ''))
})

test('reads =* as presence, with yagna\'s tolerance for whitespace after the star', () => {
  assert.deepEqual(parseConstraints('(objectClass=*)'), present('objectClass'))
  assert.deepEqual(parseConstraints('(golem.foo=* \t)'), present('golem.foo'))
  assert.deepEqual(parseConstraints('(a=**)'), eq('a', '', ''))
  assert.deepEqual(parseConstraints('(a=* x)'), eq('a', '', ' x'))
  assert.deepEqual(parseConstraints('(a=\\2a)'), eq('a', '*'))
})

test('collapses runs of wildcards, which match what one does', () => {
  assert.deepEqual(parseConstraints('(a=x***y)'), eq('a', 'x', 'y'))
  assert.deepEqual(parseConstraints('(a=***)'), eq('a', '', ''))
})

test('reads [a,b] after = as a list: items split at unescaped commas and trimmed', () => {
  assert.deepEqual(parseConstraints('(caps=[vpn,inet])'), list('caps', ['vpn'], ['inet']))
  assert.deepEqual(parseConstraints('(caps=[ vpn , inet ])'), list('caps', ['vpn'], ['inet']))
  assert.deepEqual(parseConstraints('(caps=[])'), list('caps'))
  assert.deepEqual(parseConstraints('(caps=[  ])'), list('caps'))
  assert.deepEqual(parseConstraints('(caps=[a,])'), list('caps', ['a'], ['']))
  assert.deepEqual(parseConstraints('(caps=[a\\2cb,v*])'), list('caps', ['a,b'], ['v', '']))
  assert.deepEqual(parseConstraints('(caps=[\\20a])'), list('caps', [' a']))
  // An escaped bracket makes it text.
  assert.deepEqual(parseConstraints('(caps=\\5ba,b])'), eq('caps', '[a,b]'))
  assert.deepEqual(parseConstraints('(caps=[a,b)'), eq('caps', '[a,b'))
})

test('reads implied types and aspects on attributes', () => {
  assert.deepEqual(parseConstraints('(cn$v>=1.5.0)'), { kind: 'order', ref: { name: 'cn', type: 'version' }, operator: '>=', value: '1.5.0' })
  assert.deepEqual(parseConstraints('(cn$d<10)'), { kind: 'order', ref: { name: 'cn', type: 'decimal' }, operator: '<', value: '10' })
  assert.deepEqual(parseConstraints('(cn$t<=1985-04-12T23:20:50.52Z)'), { kind: 'order', ref: { name: 'cn', type: 'datetime' }, operator: '<=', value: '1985-04-12T23:20:50.52Z' })
  assert.deepEqual(parseConstraints('(cn[aspect]=x)'), { kind: 'equals', ref: { name: 'cn', aspect: 'aspect' }, value: { kind: 'text', pattern: ['x'] } })
  assert.deepEqual(parseConstraints('(cn[aspect]$v=*)'), { kind: 'present', ref: { name: 'cn', aspect: 'aspect', type: 'version' } })
  assert.deepEqual(parsePropertyRef('golem.runtime.version$v'), { name: 'golem.runtime.version', type: 'version' })
  assert.deepEqual(parsePropertyRef('golem.com.pricing.est{30}'), { name: 'golem.com.pricing.est{30}' })
})

test('reads every comparison operator, and yagna\'s <> as not-equal', () => {
  for (const operator of ['<', '<=', '>', '>='] as const) {
    assert.deepEqual(parseConstraints(`(a${operator}5)`), { kind: 'order', ref: { name: 'a' }, operator, value: '5' })
  }
  assert.deepEqual(parseConstraints('(a<>b)'), not(eq('a', 'b')))
  assert.deepEqual(parseConstraints('(a<>*)'), not(eq('a', '', '')))
})

test('empty text, (), (&) mean no constraints; (|) is false', () => {
  assert.deepEqual(parseConstraints(''), and())
  assert.deepEqual(parseConstraints(' \n\t'), and())
  assert.deepEqual(parseConstraints('()'), and())
  assert.deepEqual(parseConstraints('( )'), and())
  assert.deepEqual(parseConstraints('(&)'), and())
  assert.deepEqual(parseConstraints('(|)'), or())
})

test('returns a frozen AST', () => {
  const ast = parseConstraints('(&(a=b)(c>=1))')
  assert.ok(Object.isFrozen(ast))
  assert.ok(ast.kind === 'and' && Object.isFrozen(ast.children) && Object.isFrozen(ast.children[0]))
})

test('says where a filter is malformed and what was expected', () => {
  const cases: Array<[string, number, RegExp]> = [
    ['a=b', 0, /expected "\(" but found "a"/],
    ['(a=b', 4, /end of the text: expected "\)" to close the filter opened at offset 0/],
    ['(&(a=b)(c=d)', 12, /expected "\)" to close the filter opened at offset 0/],
    ['(a=b))', 5, /expected the end of the constraints/],
    ['(a=b)(c=d)', 5, /expected the end of the constraints/],
    ['(&(a=b)x)', 7, /expected "\(" to start a filter or "\)" to close "&"/],
    ['(!(a=b)(c=d))', 7, /"!", which takes exactly one filter/],
    ['(!)', 2, /expected "\(" but found "\)"/],
    ['(=b)', 1, /expected a property name but found "="/],
    ['(a b=c)', 2, /comparison operator .* but found whitespace/],
    ['(golem.inf.mem.gib >= 4)', 18, /but found whitespace/],
    ['(a~=b)', 2, /approximate match "~=" is not supported/],
    ['(a)', 2, /expected a comparison operator .* but found "\)"/],
    ['(a$x=1)', 3, /expected v \(version\), d \(decimal\) or t \(date-time\) after "\$"/],
    ['(a$=1)', 3, /expected v \(version\)/],
    ['(a[x=1)', 4, /expected "\]" to close the aspect/],
    ['(a[]=1)', 3, /expected an aspect name/],
    ['(a=b(c)', 4, /unexpected "\(" in a value/],
    ['(a>=4*)', 5, /unexpected "\*": wildcards are allowed only with =/],
    ['(a=\\zz)', 3, /expected two hex digits after "\\"/],
    ['(a=\\2)', 3, /expected two hex digits/],
    ['(a=x\\c4)', 4, /escaped bytes are not valid UTF-8/],
    ['(a=\u0000)', 3, /unexpected NUL/],
    ['(', 1, /expected "\)" to close the filter opened at offset 0/],
    ['  )', 2, /expected "\(" but found "\)"/],
    ['(&(a=b)\n  (c=\\x1))', 13, /expected two hex digits/],
  ]
  for (const [text, offset, reason] of cases) assertSyntaxError(text, offset, reason)
})

test('a syntax error message shows the spot with a caret under it', () => {
  try {
    parseConstraints('(&(golem.inf.mem.gib>=4)(golem.runtime.name wasi))')
    assert.fail('expected an error')
  } catch (error) {
    assert.ok(error instanceof HearthError)
    assert.equal(
      error.shortMessage,
      [
        'invalid constraints at offset 43: expected a comparison operator (=, <, <=, >, >=) right after the property name, but found whitespace',
        '  …mem.gib>=4)(golem.runtime.name wasi))',
        '                                 ^',
      ].join('\n'),
    )
    assert.match(error.message, /Hint: whitespace is allowed between filters/)
  }
})

test('refuses filters over 64 KiB of UTF-8, counting bytes rather than characters', () => {
  const clause = '(a=b)'
  const exact = `(&${clause.repeat(13105)}(c=xxxx))`
  assert.equal(Buffer.byteLength(exact), 65536)
  assert.equal(parseConstraints(exact).kind, 'and')
  const over = `(&${clause.repeat(13105)}(c=xxxxx))`
  assert.throws(() => parseConstraints(over), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID') && /65537 bytes long; the limit is 65536/.test(e.shortMessage))
  // 22 000 three-byte characters are 66 000 bytes though only 22 000 UTF-16 units.
  const wide = `(a=${'€'.repeat(22_000)})`
  assert.throws(() => parseConstraints(wide), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID') && /66004 bytes long/.test(e.shortMessage))
  // Astral characters are four bytes (two UTF-16 units): 4 + 16383 * 4 = 65536.
  assert.equal(parseConstraints(`(a=${'\u{1f600}'.repeat(16383)})`).kind, 'equals')
  assert.throws(() => parseConstraints(`(a=${'\u{1f600}'.repeat(16383)}x)`), /65537 bytes long/)
  assert.throws(() => parseConstraints(`(a=${'x'.repeat(10 * 1024 * 1024)})`), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
})

test('accepts 64 levels of nesting and refuses 65, before descending, so no input overflows the stack', () => {
  const nested = (depth: number) => `${'(!'.repeat(depth - 1)}(a=b)${')'.repeat(depth - 1)}`
  let ast = parseConstraints(nested(64))
  let depth = 1
  while (ast.kind === 'not') {
    ast = ast.child
    depth++
  }
  assert.equal(depth, 64)
  assert.throws(() => parseConstraints(nested(65)), (e: unknown) =>
    isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID') && /nested deeper than 64 levels \(at offset 128\)/.test(e.shortMessage))
  // <> adds a level of its own.
  assert.throws(() => parseConstraints(`${'(!'.repeat(63)}(a<>b)${')'.repeat(63)}`), /nested deeper than 64/)
  for (const opener of ['(&', '(|', '(!', '(']) {
    assert.throws(() => parseConstraints(opener.repeat(30_000)), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
  }
})

test('random garbage never throws anything but a HearthError with an offset inside the text', () => {
  const alphabet = ['(', ')', '&', '|', '!', '=', '<', '>', '~', '*', '\\', '[', ']', ',', '$', ' ', '\n', 'a', 'b', '0', '9', 'v', 't', 'd', 'c4', '8d', '2a', 'é', '\u{1f600}', '\u0000']
  const seeds = ['(&(golem.inf.mem.gib>=4)(golem.runtime.name=wasi))', '(|(a=[x,y*])(!(b$v<1.0.0)))', '(c[asp]$t<=2024-01-01T00:00:00Z)']
  let state = 12345
  const rand = (n: number) => {
    state = (Math.imul(state, 1103515245) + 12345) >>> 0
    return state % n
  }
  let parsed = 0
  for (let i = 0; i < 30_000; i++) {
    let text: string
    if (i % 2 === 0) {
      text = ''
      const length = rand(40)
      for (let j = 0; j < length; j++) text += alphabet[rand(alphabet.length)]
    } else {
      // Mutations of valid filters reach deeper into the grammar than noise does.
      const chars = [...seeds[rand(seeds.length)]!]
      for (let k = rand(4) + 1; k > 0; k--) {
        const at = rand(chars.length + 1)
        const op = rand(3)
        if (op === 0) chars.splice(at, 1)
        else if (op === 1) chars.splice(at, 0, alphabet[rand(alphabet.length)]!)
        else chars[at] = alphabet[rand(alphabet.length)]!
      }
      text = chars.join('')
    }
    try {
      parseConstraints(text)
      parsed++
    } catch (error) {
      assert.ok(isHearthError(error, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'), `${JSON.stringify(text)} threw ${String(error)}`)
      const offset = error.details?.offset
      if (offset !== undefined) assert.ok(typeof offset === 'number' && offset >= 0 && offset <= text.length, JSON.stringify(text))
    }
  }
  assert.ok(parsed > 100, `some mutations stay valid (${parsed})`)
})

test('refuses what is not a string with a HearthError', () => {
  for (const value of [null, undefined, 42, {}, ['(a=b)']]) {
    assert.throws(() => parseConstraints(value as unknown as string), (e: unknown) => isHearthError(e, 'HEARTH_ERR_MARKET_CONSTRAINTS_INVALID'))
  }
})
