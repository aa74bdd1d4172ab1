/**
 * What every page is made of: live sections that load their data, show a loading state, an empty state or an
 * error, and read their data again every few seconds while shown and when an event of their topics arrives.
 */
import { toApiError, type Api, type NodeDescription } from './api.ts'
import { h, replaceChildren, type Child } from './dom.ts'
import type { EventFeed } from './events.ts'
import { alertBox, emptyState, loading } from './ui.ts'

export interface AppContext {
  api: Api
  events: EventFeed
  node: NodeDescription
}

/** A mounted page: `refresh` reads its data again (after the feed reconnects); `dispose` stops it. */
export interface PageHandle {
  refresh(): void
  dispose(): void
}

export type PageMount = (root: HTMLElement, ctx: AppContext, params: readonly string[]) => PageHandle

export const refreshEveryMs = 5_000

export interface LiveOptions<T> {
  load: () => Promise<T>
  render: (data: T) => Child
  isEmpty?: (data: T) => boolean
  empty?: () => Child
}

export interface LiveSection<T> {
  element: HTMLElement
  refresh(): Promise<void>
  current(): T | undefined
}

/** The key by which the focused element is found again after its section is drawn anew. */
function focusKeyOf(element: Element | null): string | undefined {
  if (!(element instanceof HTMLElement)) return undefined
  if (element.id !== '') return `#${CSS.escape(element.id)}`
  const key = element.dataset['focus']
  return key === undefined ? undefined : `[data-focus="${CSS.escape(key)}"]`
}

function redraw(body: HTMLElement, content: Child): void {
  const active = body.contains(document.activeElement) ? focusKeyOf(document.activeElement) : undefined
  replaceChildren(body, content)
  if (active === undefined) return
  const again = body.querySelector(active)
  if (again instanceof HTMLElement) again.focus()
}

/** A section that loads with `load` and draws with `render`; drawn again only when the data changed. */
export function liveSection<T>(options: LiveOptions<T>): LiveSection<T> {
  const alert = h('div', { class: 'live-alert' })
  const body = h('div', { class: 'live-body' }, loading())
  let data: T | undefined
  let drawn: string | undefined
  let inFlight: Promise<void> | undefined
  let again = false

  async function loadOnce(): Promise<void> {
    try {
      const next = await options.load()
      replaceChildren(alert)
      const text = JSON.stringify(next)
      data = next
      if (text === drawn) return
      drawn = text
      const empty = options.isEmpty?.(next) === true
      redraw(body, empty ? (options.empty?.() ?? emptyState('Nothing here yet.')) : options.render(next))
    } catch (error) {
      replaceChildren(alert, alertBox(toApiError(error)))
      if (drawn === undefined) replaceChildren(body)
    }
  }

  function refresh(): Promise<void> {
    if (inFlight !== undefined) {
      again = true
      return inFlight
    }
    inFlight = loadOnce().finally(() => {
      inFlight = undefined
      if (again) {
        again = false
        void refresh()
      }
    })
    return inFlight
  }

  return { element: h('div', { class: 'live' }, alert, body), refresh, current: () => data }
}

/** Calls `fn` every `ms` while the tab is visible; returns the function that stops it. */
export function every(ms: number, fn: () => void): () => void {
  const timer = setInterval(() => {
    if (document.visibilityState !== 'hidden') fn()
  }, ms)
  return () => clearInterval(timer)
}

/** `fn` at most once per `ms`: the first call runs at once, later ones within the window run once at its end. */
export function throttle(ms: number, fn: () => void): { call(): void; cancel(): void } {
  let last = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  return {
    call() {
      if (timer !== undefined) return
      const wait = last + ms - Date.now()
      if (wait <= 0) {
        last = Date.now()
        fn()
        return
      }
      timer = setTimeout(() => {
        timer = undefined
        last = Date.now()
        fn()
      }, wait)
    },
    cancel() {
      if (timer !== undefined) clearTimeout(timer)
      timer = undefined
    },
  }
}

export interface SimplePageOptions {
  head: Child
  sections: ReadonlyArray<LiveSection<unknown>>
  /** Event topics on which the sections load again. */
  topics?: readonly string[]
  /** What comes before the sections (a form). */
  before?: Child
  /** The page's layout when the sections sit inside other elements; default: `before`, then the sections. */
  content?: Child
}

/** A page of live sections under a heading: refreshed every few seconds and on events of `topics`. */
export function simplePage(root: HTMLElement, ctx: AppContext, options: SimplePageOptions): PageHandle {
  replaceChildren(root, options.head, options.content ?? [options.before, options.sections.map((section) => section.element)])
  const refresh = (): void => {
    for (const section of options.sections) void section.refresh()
  }
  const onEvent = throttle(1_000, refresh)
  const stops = [every(refreshEveryMs, refresh), ...(options.topics ?? []).map((topic) => ctx.events.on(topic, () => onEvent.call()))]
  refresh()
  return {
    refresh,
    dispose() {
      onEvent.cancel()
      for (const stop of stops) stop()
    },
  }
}
