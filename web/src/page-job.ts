/**
 * Requestor `#/jobs/<id>`: one job, live. The status card (state, progress, spent, ETA, retries, rejected results)
 * follows the event feed at once; the rest is read again from `job` when an event of this job arrives (at most
 * twice a second) and every few seconds. Outputs are listed once the job has finished.
 */
import { toApiError, type Api } from './api.ts'
import { h, replaceChildren } from './dom.ts'
import type { FeedEvent } from './events.ts'
import { formatDuration, formatHtt } from './format.ts'
import { outputsCard, renderJobDetail } from './job-parts.ts'
import { every, liveSection, refreshEveryMs, throttle, type PageMount } from './page.ts'
import { hashOf } from './router.ts'
import type { JobDetail, JobFeedData, JobProgress, JobState } from './types.ts'
import { alertBox, facts, stateTone } from './ui.ts'

interface StatusView {
  element: HTMLElement
  show(state: JobState, progress: JobProgress, error: string | null | undefined): void
}

function setText(element: HTMLElement, text: string): void {
  if (element.textContent !== text) element.textContent = text
}

/** The status card: its elements stay and only their text changes, so that screen readers hear what changed. */
function statusView(onCancel: () => void): StatusView {
  const state = h('span', { class: 'badge', 'data-testid': 'job-state' }, '…')
  const bar = h('progress', { id: 'job-progress-bar', max: 1, value: 0, 'aria-label': 'Tasks done' })
  const count = h('span', { class: 'num', 'data-testid': 'job-progress' }, '0/0')
  const spent = h('span', { class: 'amount', 'data-testid': 'job-spent' }, '—')
  const eta = h('span', { 'data-testid': 'job-eta' }, '—')
  const retries = h('span', { class: 'num', 'data-testid': 'job-retries' }, '0')
  const rejected = h('span', { class: 'num', 'data-testid': 'job-rejected' }, '0')
  const phase = h('span', null, '—')
  const error = h('p', { class: 'error-text', hidden: true, 'data-testid': 'job-error' })
  const cancel = h('button', { type: 'button', id: 'cancel-job', class: 'button button-danger', hidden: true, onclick: onCancel }, 'Cancel job')
  const element = h(
    'section',
    { class: 'card job-status', 'aria-live': 'polite', 'aria-label': 'Job status' },
    h('div', { class: 'status-line' }, h('span', { class: 'status-label' }, 'State'), state, cancel),
    h('div', { class: 'progress-line' }, bar, count),
    facts([['Spent so far', spent], ['ETA', eta], ['Retries', retries], ['Rejected results', rejected], ['Phase', phase]]),
    error,
  )
  return {
    element,
    show(next, progress, message) {
      setText(state, next)
      state.className = `badge badge-${stateTone(next)}`
      bar.max = Math.max(1, progress.total)
      bar.value = progress.done
      setText(count, `${progress.done}/${progress.total}`)
      setText(spent, formatHtt(progress.spentWei))
      spent.title = `${progress.spentWei} wei`
      setText(eta, next === 'running' || next === 'queued' ? formatDuration(progress.etaSec) : '—')
      setText(retries, String(progress.retries))
      setText(rejected, String(progress.rejected))
      setText(phase, progress.phase ?? '—')
      error.hidden = message === null || message === undefined || message === ''
      setText(error, message ?? '')
      cancel.hidden = next !== 'queued' && next !== 'running'
    },
  }
}

function isJobData(data: unknown, id: string): data is JobFeedData {
  return typeof data === 'object' && data !== null && (data as { id?: unknown }).id === id && typeof (data as { progress?: unknown }).progress === 'object'
}

async function cancelJob(api: Api, id: string, feedback: HTMLElement, after: () => void): Promise<void> {
  try {
    await api.call('job-cancel', { id })
    replaceChildren(feedback)
  } catch (error) {
    replaceChildren(feedback, alertBox(toApiError(error)))
  }
  after()
}

export const mountJob: PageMount = (root, ctx, params) => {
  const id = params[0] ?? ''
  const title = h('h1', { class: 'page-title', tabindex: -1 }, 'Job')
  const feedback = h('div', { class: 'form-feedback' })
  const outputs = outputsCard(ctx.api, id)
  const outputsSlot = h('div')
  let outputsLoaded = false
  const status = statusView(() => void cancelJob(ctx.api, id, feedback, () => void detail.refresh()))

  function showOutputs(state: JobState): void {
    if (state !== 'finished' || outputsLoaded) return
    outputsLoaded = true
    replaceChildren(outputsSlot, outputs.element)
    outputs.load().catch(() => {
      outputsLoaded = false
    })
  }

  const detail = liveSection<JobDetail>({
    load: async () => {
      const job = await ctx.api.call<JobDetail>('job', { id })
      setText(title, `Job ${job.name}`)
      status.show(job.state, job.progress, job.error)
      showOutputs(job.state)
      return job
    },
    render: renderJobDetail,
  })
  const reload = throttle(500, () => void detail.refresh())
  const onEvent = (event: FeedEvent): void => {
    if (!isJobData(event.data, id)) return
    status.show(event.data.state, event.data.progress, event.data.error)
    reload.call()
  }
  replaceChildren(
    root,
    h('div', { class: 'page-head' }, title, h('a', { href: hashOf('jobs'), class: 'back-link' }, '← All jobs'), h('p', { class: 'muted' }, 'Id ', h('code', { class: 'hash', title: id }, id))),
    status.element,
    feedback,
    outputsSlot,
    detail.element,
  )
  const stops = [ctx.events.on('job', onEvent), every(refreshEveryMs, () => void detail.refresh())]
  void detail.refresh()
  return {
    refresh: () => void detail.refresh(),
    dispose() {
      reload.cancel()
      for (const stop of stops) stop()
    },
  }
}
