/**
 * `hearth ui`: opens the dashboard of the node running from a data directory (the requestor node by default, the
 * provider with --provider) in the browser. The key goes in the URL's fragment (`#key=…`), which browsers never send
 * to a server nor in a Referer, never in a query string; the page moves it to its session storage and drops it from
 * the address bar.
 */
import { spawn } from 'node:child_process'
import { readFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { Command } from 'commander'
import { HearthError } from '../errors.ts'
import { apiKeyFile, processAlive, readApiRecord, type LocalApiKind } from '../net/local-api-server.ts'
import { providerApi } from '../provider/local-api.ts'
import { requestorApi } from '../requestor/requestor-api.ts'
import type { CommandIo } from './chain-command.ts'

interface UiFlags {
  dataDir?: string
  provider?: boolean
  open: boolean
  json?: boolean
}

/** The dashboard's URL with the key in its fragment, for the node of `kind` running from `dataDir`. */
export async function dashboardUrl(dataDir: string, kind: LocalApiKind): Promise<string> {
  const record = await readApiRecord(dataDir, kind)
  if (record === undefined || !processAlive(record.pid)) {
    throw new HearthError(kind.codes.notRunning, `no ${kind.who} runs from ${dataDir}`, { hint: `start one with: ${kind.startCommand} --data-dir ${dataDir}` })
  }
  const key = (await readFile(join(dataDir, apiKeyFile), 'utf8')).trim()
  return `${record.url}/#key=${key}`
}

/** Hands the URL to the desktop's browser; false when there is none to hand it to. */
function openInBrowser(url: string): Promise<boolean> {
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? 'explorer' : 'xdg-open'
  return new Promise((resolve) => {
    const child = spawn(opener, [url], { stdio: 'ignore', detached: true })
    child.once('error', () => resolve(false))
    child.once('spawn', () => {
      child.unref()
      resolve(true)
    })
  })
}

export function registerUiCommand(program: Command, io: CommandIo): void {
  program
    .command('ui')
    .description('open the dashboard of the node running from a data directory (the requestor node, or a provider with --provider)')
    .option('--data-dir <dir>', 'the node\'s data directory (default: .hearth/requestor, or .hearth-provider with --provider)')
    .option('--provider', 'the provider\'s dashboard instead of the requestor node\'s')
    .option('--no-open', 'print the URL only; do not start a browser')
    .option('--json', 'print { url } as JSON')
    .action(async (flags: UiFlags) => {
      const kind = flags.provider === true ? providerApi : requestorApi
      const dataDir = flags.dataDir ?? (flags.provider === true ? '.hearth-provider' : '.hearth/requestor')
      const url = await dashboardUrl(dataDir, kind)
      const desktop = process.platform !== 'linux' || process.env['DISPLAY'] !== undefined || process.env['WAYLAND_DISPLAY'] !== undefined
      const opened = flags.open && desktop ? await openInBrowser(url) : false
      if (flags.json === true) io.stdout.write(`${JSON.stringify({ url, opened })}\n`)
      else io.stdout.write(`${opened ? 'Opened' : 'Open'} the ${kind.who}'s dashboard${opened ? ':' : ' in a browser on this machine:'}\n  ${url}\nThe link holds the node's key: do not share it.\n`)
    })
}
