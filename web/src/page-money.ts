/**
 * Requestor `#/money`: every agreement's money, from deposit through vouchers to what was paid, refunded and is
 * still locked, this node's records beside the chain's; on top, the totals and whether the chain balances.
 */
import { h } from './dom.ts'
import { formatTime } from './format.ts'
import { liveSection, simplePage, type PageMount } from './page.ts'
import type { Money, MoneyAgreement, VoucherView } from './types.ts'
import { amount, badge, card, emptyState, facts, hashText, list, pageTitle } from './ui.ts'

function summary(money: Money): HTMLElement {
  const balanced = h(
    'p',
    { 'data-testid': 'money-balanced', 'data-balanced': String(money.balanced), class: money.balanced ? 'verdict verdict-good' : 'verdict verdict-bad' },
    money.balanced ? `Balanced on chain at block ${money.chainBlock}` : 'Not balanced',
  )
  return card(
    'Summary',
    balanced,
    facts([
      ['Deposited', amount(money.totals.depositedWei, { 'data-testid': 'money-deposited' })],
      ['Paid', amount(money.totals.paidWei, { 'data-testid': 'money-paid' })],
      ['Refunded', amount(money.totals.refundedWei, { 'data-testid': 'money-refunded' })],
      ['Locked', amount(money.totals.lockedWei, { 'data-testid': 'money-locked' })],
      ['Requestor', hashText(money.requestor)],
      ['Agreements', String(money.agreements.length)],
    ]),
    money.problems.length === 0 ? null : h('div', { class: 'problems' }, h('h3', null, 'Problems'), list(money.problems, 'problem-list')),
  )
}

function vouchers(items: readonly VoucherView[]): HTMLElement {
  if (items.length === 0) return h('span', { class: 'muted' }, 'none')
  return h(
    'ol',
    { class: 'vouchers' },
    items.map((voucher) => h('li', null, amount(voucher.cumulativeWei), ' ', h('span', { class: 'muted' }, voucher.deliveredAtMs === null ? 'not delivered yet' : `delivered ${formatTime(voucher.deliveredAtMs)}`))),
  )
}

function step(label: string, value: HTMLElement): HTMLElement {
  return h('li', { class: 'flow-step' }, h('span', { class: 'flow-label' }, label), value)
}

/** The provider's claims on chain, one line each (numbered when there are several). */
function claimFacts(txs: readonly string[]): [string, HTMLElement][] {
  if (txs.length === 0) return [['Claim tx', hashText(undefined)]]
  return txs.map((tx, i) => [txs.length > 1 ? `Claim tx ${i + 1}` : 'Claim tx', hashText(tx, 10, 6)])
}

function agreementCard(agreement: MoneyAgreement): HTMLElement {
  const { local, chain } = agreement
  const deposit = chain?.depositedWei ?? local?.depositedWei ?? null
  return h(
    'article',
    { class: 'card agreement', 'data-testid': 'money-agreement', 'data-agreement': agreement.agreementId },
    h(
      'div',
      { class: 'agreement-head' },
      h('h3', null, agreement.jobName ?? 'No job'),
      badge(agreement.state, 'neutral'),
      badge(agreement.agrees ? 'agrees' : 'disagrees', agreement.agrees ? 'good' : 'bad', { 'data-testid': 'agreement-agrees', 'data-agrees': String(agreement.agrees) }),
    ),
    facts([
      ['Provider', hashText(agreement.provider)],
      ['Agreement', hashText(agreement.agreementId, 8, 6)],
      ['Open tx', hashText(chain?.openTx ?? local?.openTx, 10, 6)],
      ...claimFacts(chain?.claimTxs ?? []),
      ['Close tx', hashText(chain?.closeTx, 10, 6)],
    ]),
    h(
      'ol',
      { class: 'flow-steps', 'aria-label': 'Where the money went' },
      step('Deposit', amount(deposit)),
      step('Vouchers', vouchers(local?.vouchers ?? [])),
      step('Paid on chain', amount(chain?.paidWei)),
      step('Refunded', amount(chain?.refundedWei)),
      step('Locked', amount(chain?.lockedWei)),
    ),
    chain === null ? h('p', { class: 'muted' }, 'No escrow on chain for this agreement.') : null,
  )
}

function render(money: Money): HTMLElement {
  return h(
    'div',
    { class: 'stack' },
    summary(money),
    money.agreements.length === 0 ? emptyState('No agreements yet: they appear once a job or service signs one.') : h('div', { class: 'stack' }, money.agreements.map(agreementCard)),
  )
}

export const mountMoney: PageMount = (root, ctx) => {
  const section = liveSection<Money>({ load: () => ctx.api.call<Money>('money'), render })
  return simplePage(root, ctx, { head: pageTitle('Money'), sections: [section], topics: ['job', 'payment'] })
}
