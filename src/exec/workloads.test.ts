import assert from 'node:assert/strict'
import { readdirSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { builtinWorkloadNames, builtinWorkloadPath, loadBuiltinWorkload } from './workloads.ts'

describe('workloads', () => {
  it('names the built module of each built-in workload', () => {
    // Every folder under workloads/ but the shared lib/ is a built-in workload, and nothing else is.
    const folders = readdirSync(new URL('../../workloads/', import.meta.url), { withFileTypes: true })
      .filter((entry) => entry.isDirectory() && entry.name !== 'lib')
      .map((entry) => entry.name)
    assert.deepEqual([...builtinWorkloadNames].sort(), folders.sort())
    assert.ok(builtinWorkloadPath('render').endsWith(['', 'build', 'workloads', 'render.wasm'].join(sep)))
    assert.throws(() => builtinWorkloadPath('bitcoin-miner'), (error) => isHearthError(error, 'HEARTH_ERR_API_MISUSE'))
  })

  it('says to run npm run build when a workload is not built', async () => {
    const empty = await mkdtemp(join(tmpdir(), 'hearth-workloads-'))
    try {
      await assert.rejects(loadBuiltinWorkload('render', empty), (error) => {
        assert.ok(isHearthError(error, 'HEARTH_ERR_EXEC_PACKAGE_INVALID'))
        assert.equal(error.hint, 'run npm run build')
        return true
      })
    } finally {
      await rm(empty, { recursive: true, force: true })
    }
  })
})
