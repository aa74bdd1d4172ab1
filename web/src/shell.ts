/** The frame around every page: the header (node, address, event-feed dot) and the navigation. */
import type { NodeDescription } from './api.ts'
import { h, replaceChildren } from './dom.ts'
import type { FeedState } from './events.ts'
import type { Route } from './routes.ts'
import { hashText } from './ui.ts'

const feedLabels: Record<FeedState, string> = {
  connecting: 'Connecting to live updates…',
  open: 'Live updates on',
  closed: 'Live updates lost: reconnecting…',
  refused: 'Live updates refused: the key is wrong',
}

const feedShort: Record<FeedState, string> = { connecting: 'connecting', open: 'live', closed: 'reconnecting', refused: 'refused' }

export interface Shell {
  setAddress(address: string): void
  setFeed(state: FeedState): void
  setCurrent(nav: string): void
}

function navigation(routes: readonly Route[], node: NodeDescription): { element: HTMLElement; links: HTMLAnchorElement[] } {
  const usable = routes.filter((route) => route.listed && (node.commands.size === 0 || node.commands.has(route.command)))
  const links = usable.map((route) => h('a', { href: route.nav, class: 'nav-link', 'data-nav': route.nav }, route.title))
  return { element: h('nav', { class: 'app-nav', 'aria-label': 'Pages' }, h('ul', null, links.map((link) => h('li', null, link)))), links }
}

/** Draws the header into `header` and returns what later changes in it. */
export function drawShell(header: HTMLElement, node: NodeDescription, routes: readonly Route[]): Shell {
  const address = h('span', { class: 'node-address', 'data-testid': 'node-address' }, '…')
  const dot = h('span', { class: 'feed-dot', 'aria-hidden': 'true' })
  const feedText = h('span', { class: 'feed-text' }, '')
  const feed = h('span', { class: 'feed', role: 'status', 'data-testid': 'feed-state' }, dot, feedText)
  const nav = navigation(routes, node)
  replaceChildren(
    header,
    h(
      'div',
      { class: 'header-bar' },
      h('a', { class: 'brand', href: '#/' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), 'Hearth'),
      h('span', { class: `node-kind node-kind-${node.kind}`, 'data-testid': 'node-kind' }, node.kind === 'provider' ? 'Provider' : 'Requestor'),
      address,
      feed,
    ),
    nav.element,
  )
  return {
    setAddress(value) {
      replaceChildren(address, hashText(value))
    },
    setFeed(state) {
      dot.className = `feed-dot feed-${state}`
      feed.title = feedLabels[state]
      feed.dataset['state'] = state
      feedText.textContent = feedShort[state]
      feed.setAttribute('aria-label', feedLabels[state])
    },
    setCurrent(current) {
      for (const link of nav.links) {
        if (link.dataset['nav'] === current) link.setAttribute('aria-current', 'page')
        else link.removeAttribute('aria-current')
      }
    },
  }
}
