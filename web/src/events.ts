/**
 * The node's event feed: a WebSocket at `/v1/events` on the same host. After it opens the key is sent as
 * `{"type":"auth","key":…}`; the node answers `{"type":"ready"}` and then sends `{"type":"event",topic,atMs,data}`.
 * When the socket closes it is opened again after a growing delay (1 s up to 15 s), and once ready again the
 * `onReconnect` callback runs so the page reads its data afresh. A wrong key (close code 4401) stops the feed.
 */

export type FeedState = 'connecting' | 'open' | 'closed' | 'refused'

export interface FeedEvent {
  topic: string
  atMs: number
  data: unknown
}

export interface EventFeed {
  /** Calls `listener` with every event of `topic`; returns the function that stops it. */
  on(topic: string, listener: (event: FeedEvent) => void): () => void
  /** Calls `listener` now and whenever the connection's state changes; returns the function that stops it. */
  onState(listener: (state: FeedState) => void): () => void
  close(): void
}

const minDelayMs = 1_000
const maxDelayMs = 15_000
const wrongKeyCode = 4401

function parseEvent(text: unknown): { type: string; event?: FeedEvent } | undefined {
  if (typeof text !== 'string') return undefined
  try {
    const message = JSON.parse(text) as { type?: unknown; topic?: unknown; atMs?: unknown; data?: unknown }
    if (message.type === 'ready') return { type: 'ready' }
    if (message.type !== 'event' || typeof message.topic !== 'string') return undefined
    return { type: 'event', event: { topic: message.topic, atMs: typeof message.atMs === 'number' ? message.atMs : Date.now(), data: message.data } }
  } catch {
    return undefined
  }
}

/** Opens the feed with `key`; `onReconnect` runs each time it is ready again after a break. */
export function connectEvents(key: string, onReconnect: () => void): EventFeed {
  const listeners = new Map<string, Set<(event: FeedEvent) => void>>()
  const stateListeners = new Set<(state: FeedState) => void>()
  let state: FeedState = 'connecting'
  let socket: WebSocket | undefined
  let delayMs = minDelayMs
  let timer: ReturnType<typeof setTimeout> | undefined
  let everReady = false
  let closed = false

  function setState(next: FeedState): void {
    state = next
    for (const listener of stateListeners) listener(next)
  }

  function dispatch(event: FeedEvent): void {
    for (const listener of listeners.get(event.topic) ?? []) listener(event)
  }

  function open(): void {
    setState('connecting')
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/events`
    const ws = new WebSocket(url)
    socket = ws
    ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'auth', key })))
    ws.addEventListener('message', (message) => {
      const parsed = parseEvent(message.data)
      if (parsed?.type === 'ready') {
        delayMs = minDelayMs
        setState('open')
        if (everReady) onReconnect()
        everReady = true
      } else if (parsed?.event !== undefined) {
        dispatch(parsed.event)
      }
    })
    ws.addEventListener('close', (event) => {
      if (closed) return
      if (event.code === wrongKeyCode) {
        setState('refused')
        return
      }
      setState('closed')
      timer = setTimeout(open, delayMs)
      delayMs = Math.min(maxDelayMs, delayMs * 2)
    })
  }

  open()
  return {
    on(topic, listener) {
      const set = listeners.get(topic) ?? new Set()
      set.add(listener)
      listeners.set(topic, set)
      return () => set.delete(listener)
    },
    onState(listener) {
      stateListeners.add(listener)
      listener(state)
      return () => stateListeners.delete(listener)
    },
    close() {
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      socket?.close()
    },
  }
}
