/**
 * Writes docs/errors.md from the registry in src/errors.ts: what each code means, whose fault it is, whether a retry
 * can help and where, and what to do, one section per code under a `### HEARTH_ERR_X` heading (anchor
 * `#hearth_err_x`, which every HearthError's message links to). `--check` writes nothing and fails when the file
 * differs from what the registry gives (`npm run lint` runs it, and src/errors.test.ts compares the two as well).
 */
import { readFileSync, writeFileSync } from 'node:fs'
import { relative, resolve } from 'node:path'
import { errorFaults, errorRegistry, errorRetries, type ErrorCode } from '../src/errors.ts'

export const errorsDocPath = resolve(import.meta.dirname, '..', 'docs', 'errors.md')

const intro = `# Error codes

<!-- Generated from the registry in src/errors.ts by \`npm run docs:errors\`: edit it there, not here. -->

Every error Hearth raises is a \`HearthError\` with one of these codes (\`src/errors.ts\`). The CLI prints the message,
a hint saying what to do, and the code with a link to its section below; \`--json\` reports carry
\`{ code, message, hint, details }\`. A failure a peer reports comes as \`HEARTH_ERR_NET_REMOTE\` with the peer's own
code in \`details.remoteCode\`.

Each code states whose fault it is and whether a retry can help, and where; Hearth decides from these, not from lists
of its own: a requestor puts a failed attempt down to the task when the provider's code is the task's fault, and
tries the same provider again a little later when it is nobody's and a retry later helps. \`hearth\` exits with code 2
for an error that is the caller's (bad input: nothing was started or paid) and 1 for any other.
`

/** Markdown table cells hold no line breaks or bare pipes. */
function cell(text: string): string {
  return text.replaceAll('|', '\\|')
}

function sentence(text: string): string {
  const capital = text.charAt(0).toUpperCase() + text.slice(1)
  return /[.!?]$/.test(capital) ? capital : `${capital}.`
}

/** The whole of docs/errors.md, from the registry. */
export function renderErrorsDoc(): string {
  const codes = Object.keys(errorRegistry) as ErrorCode[]
  const lines: string[] = [intro, '## Whose fault', '', '| fault | meaning |', '| --- | --- |']
  for (const [fault, meaning] of Object.entries(errorFaults)) lines.push(`| \`${fault}\` | ${cell(meaning)} |`)
  lines.push('', '## Retry', '', '| retry | meaning |', '| --- | --- |')
  for (const [retry, meaning] of Object.entries(errorRetries)) lines.push(`| \`${retry}\` | ${cell(meaning)} |`)
  lines.push('', '## Codes', '', '| code | fault | retry |', '| --- | --- | --- |')
  for (const code of codes) lines.push(`| [\`${code}\`](#${code.toLowerCase()}) | ${errorRegistry[code].fault} | ${errorRegistry[code].retry} |`)
  for (const code of codes) {
    const info = errorRegistry[code]
    lines.push(
      '',
      `### ${code}`,
      '',
      sentence(info.meaning),
      '',
      `- Fault: \`${info.fault}\` — ${errorFaults[info.fault]}.`,
      `- Retry: \`${info.retry}\` — ${errorRetries[info.retry]}.`,
      `- Action: ${info.action}`,
    )
  }
  return `${lines.join('\n')}\n`
}

if (process.argv[1] !== undefined && resolve(process.argv[1]) === resolve(import.meta.filename)) {
  const wanted = renderErrorsDoc()
  const where = relative(process.cwd(), errorsDocPath)
  if (process.argv.includes('--check')) {
    let present = ''
    try {
      present = readFileSync(errorsDocPath, 'utf8')
    } catch {
      present = ''
    }
    if (present !== wanted) {
      console.error(`${where} is stale: it differs from the registry in src/errors.ts; run npm run docs:errors`)
      process.exit(1)
    }
    console.log(`${where} matches the registry in src/errors.ts`)
  } else {
    writeFileSync(errorsDocPath, wanted)
    console.log(`wrote ${where}`)
  }
}
