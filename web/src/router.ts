/**
 * Hash routes: `#/`, `#/market`, `#/jobs/<id>`… The path is the part after `#`; a hash that does not start with `#/`
 * (the skip link's `#main`) is not a route and leaves the page as it is.
 */

export interface RouteMatch<R> {
  route: R
  params: string[]
}

/** The route path of `hash`, "/" for none; undefined when the hash is not a route. */
export function routePath(hash: string): string | undefined {
  if (hash === '' || hash === '#') return '/'
  if (!hash.startsWith('#/')) return undefined
  const path = hash.slice(1).split('?')[0] ?? '/'
  return path.length > 1 ? path.replace(/\/+$/, '') : path
}

/** The first route whose pattern matches `path`, with the pattern's groups decoded. */
export function matchRoute<R extends { pattern: RegExp }>(routes: readonly R[], path: string): RouteMatch<R> | undefined {
  for (const route of routes) {
    const match = route.pattern.exec(path)
    if (match === null) continue
    try {
      return { route, params: match.slice(1).map((part) => decodeURIComponent(part)) }
    } catch {
      return undefined
    }
  }
  return undefined
}

/** The hash of a route path, its parts encoded: `hashOf('jobs', id)` → `#/jobs/<id>`. */
export function hashOf(...parts: string[]): string {
  return `#/${parts.map((part) => encodeURIComponent(part)).join('/')}`
}
