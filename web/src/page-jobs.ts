/** Requestor `#/jobs`: a form that submits a job file and its inputs, and the list of the node's jobs. */
import { ApiError, toApiError, type Api } from './api.ts'
import { h, replaceChildren } from './dom.ts'
import { fileToBase64, inputPath } from './files.ts'
import { formatTime } from './format.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import { hashOf } from './router.ts'
import type { JobList, JobSubmitted, JobSummary } from './types.ts'
import { alertBox, amount, badge, card, cell, emptyState, pageTitle, stateTone, table } from './ui.ts'

function progressText(job: JobSummary): string {
  return `${job.progress.done}/${job.progress.total}`
}

function jobRow(job: JobSummary): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-testid': 'job-row', 'data-job': job.id },
    cell(h('a', { href: hashOf('jobs', job.id), 'data-focus': `job-${job.id}` }, job.name)),
    cell(job.kind),
    cell(badge(job.state, stateTone(job.state))),
    cell(h('span', { class: 'progress-cell' }, h('progress', { max: Math.max(1, job.progress.total), value: job.progress.done, 'aria-label': `${job.name} progress` }), progressText(job)), true),
    cell(amount(job.progress.spentWei), true),
    cell(formatTime(job.submittedAtMs)),
  )
}

function renderJobs(data: JobList): HTMLElement {
  const jobs = [...data.jobs].sort((a, b) => b.submittedAtMs - a.submittedAtMs)
  return table('Jobs', ['Job', 'Kind', 'State', 'Progress', 'Spent', 'Submitted'], jobs.map(jobRow), [3, 4])
}

/** The job file's content as a JSON object; refuses anything else with a message the form shows. */
async function readJobFile(file: File): Promise<Record<string, unknown>> {
  let parsed: unknown
  try {
    parsed = JSON.parse(await file.text())
  } catch {
    throw new ApiError('HEARTH_DASHBOARD_JOB_FILE', `${file.name} is not valid JSON.`, 'Pick the job file (a .json file, see docs/job-kinds.md).', 0)
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ApiError('HEARTH_DASHBOARD_JOB_FILE', `${file.name} is not a JSON object.`, 'A job file is a JSON object with the job\'s kind and settings.', 0)
  }
  return parsed as Record<string, unknown>
}

async function submit(api: Api, jobFile: File, inputs: readonly File[]): Promise<JobSubmitted> {
  const body = {
    jobFile: await readJobFile(jobFile),
    files: await Promise.all(inputs.map(async (file) => ({ path: inputPath(file), base64: await fileToBase64(file) }))),
  }
  return api.call<JobSubmitted>('job-submit', body.files.length === 0 ? { jobFile: body.jobFile } : body)
}

function submitForm(api: Api, onSubmitted: () => void): HTMLElement {
  const jobFile = h('input', { type: 'file', id: 'job-file', name: 'job-file', accept: '.json,application/json', required: true })
  const inputs = h('input', { type: 'file', id: 'job-inputs', name: 'job-inputs', multiple: true })
  const button = h('button', { type: 'submit', id: 'submit-job', class: 'button button-primary' }, 'Submit job')
  const feedback = h('div', { class: 'form-feedback' })
  const onSubmit = async (event: Event): Promise<void> => {
    event.preventDefault()
    const file = jobFile.files?.[0]
    if (file === undefined) {
      replaceChildren(feedback, alertBox(new ApiError('HEARTH_DASHBOARD_JOB_FILE', 'Pick a job file first.', undefined, 0)))
      jobFile.focus()
      return
    }
    button.disabled = true
    replaceChildren(feedback, h('p', { class: 'loading', role: 'status' }, 'Submitting…'))
    try {
      const job = await submit(api, file, [...(inputs.files ?? [])])
      onSubmitted()
      location.hash = hashOf('jobs', job.id)
    } catch (error) {
      replaceChildren(feedback, alertBox(toApiError(error)))
    } finally {
      button.disabled = false
    }
  }
  return card(
    'Submit a job',
    h(
      'form',
      { class: 'submit-form', novalidate: true, onsubmit: (event: Event) => void onSubmit(event) },
      h('div', { class: 'field' }, h('label', { for: 'job-file' }, 'Job file'), jobFile, h('p', { class: 'help' }, 'The job\'s JSON file.')),
      h('div', { class: 'field' }, h('label', { for: 'job-inputs' }, 'Input files'), inputs, h('p', { class: 'help' }, 'The files the job file names, sent under their names.')),
      h('div', { class: 'actions' }, button),
      feedback,
    ),
  )
}

export const mountJobs: PageMount = (root, ctx) => {
  const section = liveSection<JobList>({
    load: () => ctx.api.call<JobList>('jobs'),
    render: renderJobs,
    isEmpty: (data) => data.jobs.length === 0,
    empty: () => emptyState('No jobs yet. Submit one above.'),
  })
  const form = submitForm(ctx.api, () => void section.refresh())
  return simplePage(root, ctx, { head: pageTitle('Jobs'), content: [form, card('All jobs', section.element)], sections: [section], topics: ['job'] })
}
