/**
 * Where the built dashboard is: `dist/web/` of this package (built at install by scripts/build.ts from web/), the same
 * folder whether this module runs from src/ (tsx) or from dist/.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

export function dashboardDir(): string | undefined {
  const dir = fileURLToPath(new URL('../../dist/web/', import.meta.url))
  return existsSync(`${dir}index.html`) ? dir : undefined
}
