/**
 * The dashboard's entry: takes the key from the URL, asks `GET /openapi.json` which node this is, draws the header
 * and navigation for it, opens the event feed, and mounts the page of the current hash route.
 */
import { createApi, describeNode, toApiError, type Api } from './api.ts'
import { h, replaceChildren } from './dom.ts'
import { connectEvents } from './events.ts'
import { takeKey } from './key.ts'
import type { AppContext, PageHandle } from './page.ts'
import { matchRoute, routePath } from './router.ts'
import { routesOf, type Route } from './routes.ts'
import { drawShell, type Shell } from './shell.ts'
import { alertBox, card, pageTitle } from './ui.ts'

function mainElement(): HTMLElement {
  const main = document.getElementById('main')
  if (main === null) throw new Error('index.html has no <main id="main">')
  return main
}

function headerElement(): HTMLElement {
  return document.getElementById('app-header') ?? document.body.insertBefore(h('header', { class: 'app-header', id: 'app-header' }), document.body.firstChild)
}

/** The skip link moves focus to the content without changing the hash, which is the router's. */
function wireSkipLink(main: HTMLElement): void {
  document.querySelector('.skip-link')?.addEventListener('click', (event) => {
    event.preventDefault()
    main.focus()
  })
}

function showNoKey(main: HTMLElement): void {
  document.title = 'Hearth dashboard'
  replaceChildren(
    main,
    pageTitle('Open the dashboard from Hearth'),
    h(
      'section',
      { class: 'card', role: 'alert', 'data-testid': 'no-key' },
      h('p', null, 'This page needs the key of your node, and it came without one.'),
      h('p', null, 'Open the dashboard with ', h('code', null, 'hearth ui'), ' for the requestor node, or ', h('code', null, 'hearth ui --provider'), ' for the provider: it opens this page with the key.'),
    ),
  )
}

function notFound(main: HTMLElement): void {
  replaceChildren(main, pageTitle('Page not found'), card(null, h('p', null, 'There is no such page. ', h('a', { href: '#/' }, 'Go to the start page.'))))
}

async function loadAddress(api: Api, shell: Shell): Promise<void> {
  try {
    const status = await api.call<{ address?: unknown }>('status')
    if (typeof status.address === 'string') shell.setAddress(status.address)
  } catch {
    // The header keeps its placeholder; pages show the error themselves.
  }
}

/** Mounts the page of the current hash on every hash change; returns the function that reloads the current page. */
function startRouter(main: HTMLElement, ctx: AppContext, routes: readonly Route[], shell: Shell): () => void {
  let current: PageHandle | undefined
  let first = true
  const show = (): void => {
    const path = routePath(location.hash)
    if (path === undefined) return
    current?.dispose()
    current = undefined
    const match = matchRoute(routes, path)
    shell.setCurrent(match?.route.nav ?? '')
    if (match === undefined) notFound(main)
    else {
      document.title = `${match.route.title} · Hearth ${ctx.node.kind}`
      current = match.route.mount(main, ctx, match.params)
    }
    if (!first) main.querySelector<HTMLElement>('.page-title')?.focus()
    first = false
  }
  window.addEventListener('hashchange', show)
  show()
  return () => current?.refresh()
}

async function start(): Promise<void> {
  const main = mainElement()
  wireSkipLink(main)
  const key = takeKey()
  if (key === undefined) {
    showNoKey(main)
    return
  }
  let node
  try {
    node = await describeNode()
  } catch (error) {
    replaceChildren(main, pageTitle('Hearth dashboard'), alertBox(toApiError(error)))
    return
  }
  const api = createApi(key)
  const routes = routesOf(node.kind)
  const shell = drawShell(headerElement(), node, routes)
  let reloadPage = (): void => {}
  const events = connectEvents(key, () => {
    void loadAddress(api, shell)
    reloadPage()
  })
  events.onState((state) => shell.setFeed(state))
  reloadPage = startRouter(main, { api, events, node }, routes, shell)
  await loadAddress(api, shell)
}

void start()
