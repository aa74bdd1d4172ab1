/**
 * The requestor API in one file: `node --import tsx examples/api/wordcount.ts`.
 *
 * It starts a local network (an embedded chain and 3 providers), opens a job for the built-in wordcount module
 * (runtime, limits, price cap, budget, verification), maps the module over text files as tasks, follows the job's
 * events, and sums the counts. `await using` settles the job's agreements however the block ends; an AbortSignal
 * cancels it. From another package, import from 'hearth' instead of '../../src/index.ts'.
 */
import { readFile } from 'node:fs/promises'
import { parseEther } from 'viem'
import { loadBuiltinWorkload, startDevnet, type JobEvent, type TaskSpec } from '../../src/index.ts'

const files = ['hearth.txt', 'market.txt', 'sandbox.txt']
const devnet = await startDevnet({ providers: 3 })
try {
  const requestor = devnet.requestor.agent
  const cancel = AbortSignal.timeout(60_000)
  const onEvent = (event: JobEvent): void => {
    if (event.type === 'task-done') console.log(`task ${event.taskIndex} done by ${event.provider.slice(0, 10)}… (${event.done}/${event.total}${event.checked === true ? ', checked' : ''})`)
    if (event.type === 'task-rejected') console.log(`task ${event.taskIndex}: ${event.provider} rejected: ${event.reason}`)
  }
  await using job = await requestor.openJob(
    {
      name: 'api-wordcount',
      runtime: 'wasi',
      package: await loadBuiltinWorkload('wordcount'),
      tasks: [],
      plannedTasks: files.length,
      providers: 3,
      maxPricePerTaskWei: parseEther('0.01'),
      budgetWei: parseEther('1'),
      timeoutMs: 10_000,
      maxMemoryBytes: 64 << 20,
      maxOutputBytes: 1 << 20,
      // Results from providers nobody vouches for are checked by others, the more often the less they are known.
      verification: { adaptive: true },
      // Only providers with at least 1 GiB of memory.
      demand: { constraints: '(golem.inf.mem.gib>=1)' },
    },
    { onEvent, signal: cancel },
  )
  const tasks: TaskSpec[] = await Promise.all(
    files.map(async (file) => ({
      args: ['--out', '/out/counts.tsv', '/in/text.txt'],
      env: {},
      inputs: [{ path: '/in/text.txt', data: await readFile(new URL(`../wordcount/${file}`, import.meta.url)) }],
      outputs: ['/out/counts.tsv'],
    })),
  )
  const outcomes = await job.run(tasks, { phase: 'count' })
  const totals = new Map<string, number>()
  for (const outcome of outcomes) {
    for (const line of Buffer.from(outcome.outputs[0]!.data).toString('utf8').split('\n')) {
      const [word, count] = line.split('\t')
      if (word !== undefined && word !== '' && count !== undefined) totals.set(word, (totals.get(word) ?? 0) + Number(count))
    }
  }
  const top = [...totals.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, 5)
  console.log(`most frequent: ${top.map(([word, count]) => `${word} ${count}`).join(', ')}`)
  console.log(`spent ${job.spentWei()} wei; checks ${job.figures().checks}, rejected ${job.figures().rejected}`)
} finally {
  await devnet.stop()
}
