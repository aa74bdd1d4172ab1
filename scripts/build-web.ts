/**
 * Builds the dashboard that the nodes' local API serves (src/net/local-api-web.ts, found by src/api/web-assets.ts):
 * web/src/main.ts bundled by esbuild into one minified ES module, dist/web/assets/app.js; web/styles.css copied to
 * dist/web/assets/app.css and web/index.html to dist/web/index.html. The page loads nothing else, as the API's
 * Content-Security-Policy allows its own files only. Run directly (`node --import tsx scripts/build-web.ts`) it builds.
 */
import { copyFile, mkdir } from 'node:fs/promises'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const repoRoot = resolve(import.meta.dirname, '..')
const webDir = join(repoRoot, 'web')
const outDir = join(repoRoot, 'dist', 'web')

/** Bundles the dashboard's script and copies its page and styles into dist/web/. */
export async function buildWeb(): Promise<void> {
  const started = performance.now()
  const assetsDir = join(outDir, 'assets')
  await mkdir(assetsDir, { recursive: true })
  await build({
    entryPoints: [join(webDir, 'src', 'main.ts')],
    outfile: join(assetsDir, 'app.js'),
    bundle: true,
    format: 'esm',
    target: 'es2022',
    platform: 'browser',
    minify: true,
    sourcemap: false,
    legalComments: 'none',
    logLevel: 'warning',
    tsconfig: join(webDir, 'tsconfig.json'),
  })
  await copyFile(join(webDir, 'styles.css'), join(assetsDir, 'app.css'))
  await copyFile(join(webDir, 'index.html'), join(outDir, 'index.html'))
  console.log(`hearth build: web/ -> dist/web/ in ${Math.round(performance.now() - started)} ms`)
}

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === resolve(process.argv[1])) await buildWeb()
