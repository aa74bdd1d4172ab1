/** The parts of the live job view drawn from the job's detail: tasks, agreements, settlement audit, outputs. */
import { toApiError, type Api } from './api.ts'
import { h, replaceChildren } from './dom.ts'
import { download, fromBase64 } from './files.ts'
import { formatBytes } from './format.ts'
import type { JobAgreement, JobDetail, JobOutput, JobOutputs, JobTask } from './types.ts'
import { alertBox, amount, badge, card, cell, emptyState, hashText, loading, stateTone, table } from './ui.ts'

/** More rows than this are not drawn: the table would slow the page down; the counts above still cover them all. */
const maxTaskRows = 1_000

function taskRow(task: JobTask): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-task': task.index, 'data-batch': task.batch },
    cell(task.index, true),
    cell(task.batch),
    cell(badge(task.state, stateTone(task.state))),
    cell(hashText(task.provider)),
    cell(task.attempts, true),
    cell(task.retries, true),
    cell(task.rejected, true),
    cell(task.checked ? badge('checked', 'good') : h('span', { class: 'muted' }, 'no')),
    cell(task.lastError === null ? '' : h('span', { class: 'error-text', title: task.lastError }, task.lastError)),
  )
}

function tasksCard(tasks: readonly JobTask[]): HTMLElement {
  if (tasks.length === 0) return card('Tasks', emptyState('No tasks planned yet.'))
  const shown = tasks.slice(0, maxTaskRows)
  return card(
    'Tasks',
    tasks.length > shown.length ? h('p', { class: 'muted' }, `The first ${shown.length} of ${tasks.length} tasks.`) : null,
    table('Tasks', ['#', 'Batch', 'State', 'Provider', 'Attempts', 'Retries', 'Rejected', 'Checked', 'Last error'], shown.map(taskRow), [0, 4, 5, 6]),
  )
}

function agreementRow(agreement: JobAgreement): HTMLTableRowElement {
  return h(
    'tr',
    { 'data-agreement': agreement.agreementId },
    cell(hashText(agreement.provider)),
    cell(amount(agreement.depositWei), true),
    cell(hashText(agreement.openTx, 10, 6)),
    cell(amount(agreement.paidWei), true),
    cell(amount(agreement.refundedWei), true),
    cell(hashText(agreement.settleTx, 10, 6)),
  )
}

function agreementsCard(agreements: readonly JobAgreement[]): HTMLElement {
  if (agreements.length === 0) return card('Agreements', emptyState('No agreements signed yet.'))
  return card('Agreements', table('Agreements', ['Provider', 'Deposit', 'Open tx', 'Paid', 'Refunded', 'Settle tx'], agreements.map(agreementRow), [1, 3, 4]))
}

const done = new Set(['finished', 'failed', 'cancelled'])

function auditCard(job: JobDetail): HTMLElement | null {
  if (!done.has(job.state)) return null
  const settlement = job.report?.settlement ?? null
  if (settlement === null) return card('Settlement', emptyState('No settlement report for this job.'))
  const balanced = settlement.audit.balanced
  return card(
    'Settlement',
    h('p', { 'data-testid': 'job-audit', 'data-balanced': String(balanced), class: balanced ? 'verdict verdict-good' : 'verdict verdict-bad' }, `Settlement audit: ${balanced ? 'balanced' : 'not balanced'}`),
    h('p', { class: 'flow' }, 'Deposited ', amount(settlement.payments.depositedWei), ' → paid ', amount(settlement.payments.paidWei), ' + refunded ', amount(settlement.payments.refundedWei)),
  )
}

/** The detail's tasks, agreements and (once done) settlement audit. */
export function renderJobDetail(job: JobDetail): HTMLElement {
  return h('div', { class: 'stack' }, auditCard(job), tasksCard(job.tasks), agreementsCard(job.progress.agreements))
}

function baseName(path: string): string {
  return path.split('/').filter((part) => part !== '').pop() ?? 'output'
}

async function save(api: Api, id: string, path: string, feedback: HTMLElement): Promise<void> {
  try {
    const output = await api.call<JobOutput>('job-output', { id, path })
    download(fromBase64(output.base64), baseName(output.path))
    replaceChildren(feedback)
  } catch (error) {
    replaceChildren(feedback, alertBox(toApiError(error)))
  }
}

/** The outputs card: one download button per file of `job-outputs`. */
export function outputsCard(api: Api, id: string): { element: HTMLElement; load(): Promise<void> } {
  const body = h('div', null, loading('Loading the outputs…'))
  const feedback = h('div', { class: 'form-feedback' })
  async function load(): Promise<void> {
    try {
      const { files } = await api.call<JobOutputs>('job-outputs', { id })
      const buttons = files.map((file) =>
        h('li', null, h('button', { type: 'button', class: 'button', 'data-testid': 'job-output', 'data-path': file.path, 'data-focus': `output-${file.path}`, onclick: () => void save(api, id, file.path, feedback) }, `Download ${file.path}`), ' ', h('span', { class: 'muted' }, formatBytes(file.bytes))),
      )
      replaceChildren(body, files.length === 0 ? emptyState('This job left no output files.') : h('ul', { class: 'outputs' }, buttons))
    } catch (error) {
      replaceChildren(body, alertBox(toApiError(error)))
      throw error
    }
  }
  return { element: card('Outputs', body, feedback), load }
}
