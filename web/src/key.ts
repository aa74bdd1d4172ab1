/**
 * The API key: `hearth ui` opens the dashboard at `#key=<64 hex>`. The key is kept in sessionStorage
 * (`hearth.key`) and the fragment is replaced with `#/`, so that the key leaves the address bar and history.
 */

const storageKey = 'hearth.key'

function keyFromFragment(hash: string): string | undefined {
  const params = new URLSearchParams(hash.replace(/^#\/?/, ''))
  const key = params.get('key')?.trim()
  return key !== undefined && key !== '' ? key : undefined
}

function stored(): string | undefined {
  try {
    return sessionStorage.getItem(storageKey) ?? undefined
  } catch {
    return undefined
  }
}

/** The key from the URL (then kept, and removed from the URL) or from this tab's session; undefined without one. */
export function takeKey(): string | undefined {
  const fromUrl = keyFromFragment(location.hash)
  if (fromUrl === undefined) return stored()
  try {
    sessionStorage.setItem(storageKey, fromUrl)
  } catch {
    // Storage may be off: the key still serves this page until it is reloaded.
  }
  history.replaceState(null, '', `${location.pathname}${location.search}#/`)
  return fromUrl
}

