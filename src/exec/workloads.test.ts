import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, sep } from 'node:path'
import { describe, it } from 'node:test'
import { isHearthError } from '../errors.ts'
import { builtinWorkloadNames, builtinWorkloadPath, loadBuiltinWorkload } from './workloads.ts'

describe('workloads', () => {
  it('names the built module of each built-in workload', () => {
    assert.deepEqual([...builtinWorkloadNames], ['render'])
    assert.ok(builtinWorkloadPath('render').endsWith(['', 'build', 'workloads', 'render.wasm'].join(sep)))
    assert.throws(() => builtinWorkloadPath('bitcoin-miner'), (error) => isHearthError(error, 'HEARTH_ERR_CONFIG_INVALID'))
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
