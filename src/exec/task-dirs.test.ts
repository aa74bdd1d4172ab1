import assert from 'node:assert/strict'
import { mkdtemp, readdir, rm, utimes, writeFile, mkdir, unlink } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, it } from 'node:test'
import { createTaskDirs } from './task-dirs.ts'

describe('task directories', () => {
  let base: string

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'hearth-task-dirs-'))
  })

  after(async () => {
    await rm(base, { recursive: true, force: true })
  })

  it('hands out an empty directory of its own to each task at once', async () => {
    const dirs = createTaskDirs({ base: join(base) })
    const taken = [dirs.take('a'), dirs.take('a'), dirs.take('b')]
    assert.equal(new Set(taken).size, 3)
    for (const dir of taken) assert.deepEqual(await readdir(dir), [])
    for (const dir of taken) await dirs.give('a', dir)
    await dirs.close()
    assert.deepEqual(await readdir(base), [])
  })

  it('keeps a directory its task left untouched for the next task of the same group only', async () => {
    const dirs = createTaskDirs({ base })
    const first = dirs.take('agreement-1')
    await dirs.give('agreement-1', first)
    const other = dirs.take('agreement-2')
    assert.notEqual(other, first, 'another group never gets it')
    const again = dirs.take('agreement-1')
    assert.equal(again, first, 'the same group does')
    await dirs.give('agreement-2', other)
    await dirs.give('agreement-1', again)
    await dirs.close()
    assert.deepEqual(await readdir(base), [])
  })

  it('removes a directory whose task changed anything in it, with what it holds', async () => {
    const dirs = createTaskDirs({ base })
    const changes: ((dir: string) => Promise<void>)[] = [
      (dir) => writeFile(join(dir, 'left-behind'), 'data'),
      (dir) => mkdir(join(dir, 'sub')),
      // Created and removed again: the folder's times tell, so it is not kept.
      async (dir) => {
        await writeFile(join(dir, 'tmp'), 'x')
        await unlink(join(dir, 'tmp'))
      },
      // Its times set: what a later task would read there could carry a message.
      (dir) => utimes(dir, new Date(1_000_000), new Date(2_000_000)),
    ]
    for (const change of changes) {
      const dir = dirs.take('g')
      await change(dir)
      await dirs.give('g', dir)
      const next = dirs.take('g')
      assert.notEqual(next, dir, 'a changed directory is not handed out again')
      assert.deepEqual(await readdir(next), [])
      await dirs.give('g', next)
    }
    await dirs.close()
    assert.deepEqual(await readdir(base), [], 'nothing is left once closed')
  })

  it('removes what it kept after the idle time, and what is given back after close', async () => {
    const dirs = createTaskDirs({ base, idleMs: 50 })
    const dir = dirs.take('g')
    await dirs.give('g', dir)
    const deadline = Date.now() + 10_000
    while ((await readdir(base)).length > 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    assert.deepEqual(await readdir(base), [])
    const late = dirs.take('g')
    await dirs.close()
    await dirs.give('g', late)
    assert.deepEqual(await readdir(base), [])
  })
})
