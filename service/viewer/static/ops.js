// Operations: status webhooks (with each one's delivery log and Redeliver), schedules, and
// connections. Everything is read from the REST API, which never answers with a webhook's or
// a connection's secret: this page has none to show.

import { enc, get, post, query } from './api.js';
import { fmtTime, h, replace, statusBadge } from './dom.js';

const PAGE = 50;
// Delivery states (service/webhooks.py): colour class, icon and word, never colour alone.
const DELIVERY = {
  PENDING: ['pending_redrive', '…'],
  RUNNING: ['running', '●'],
  DELIVERED: ['succeeded', '✓'],
  DEAD: ['failed', '✗'],
};

/** A badge for a state word: `kind` picks the colour (the execution status classes). */
function badge(word, kind, icon) {
  return h('span', { class: `badge st-${kind}` }, h('span', { 'aria-hidden': 'true' }, icon), ' ', word);
}

function enabledBadge(on) {
  return on ? badge('Active', 'succeeded', '✓') : badge('Paused', 'aborted', '⏸');
}

/** The execution name in an execution ARN (arn:aws:states:region:account:execution:sm:name). */
function executionName(arn) {
  const parts = String(arn || '').split(':');
  return parts.length >= 8 ? parts.slice(7).join(':') : String(arn || '');
}

function executionLink(arn) {
  return h('a', { href: `/ui/executions/${enc(arn)}`, title: arn }, executionName(arn));
}

function machineLink(name) {
  return h('a', { href: `/ui/state-machines/${enc(name)}` }, name);
}

/** A Pause/Resume button: calls `act(paused)` with the state to go to, shows errors in the
 * banner, and leaves the focus on the button it redraws. */
function toggleButton({ paused, label, id, act, ctx, where }) {
  const button = h('button', { type: 'button', class: 'small', id, 'data-action': paused ? 'resume' : 'pause' },
    paused ? 'Resume' : 'Pause');
  button.setAttribute('aria-label', `${paused ? 'Resume' : 'Pause'} ${label}`);
  button.addEventListener('click', async () => {
    button.disabled = true;
    try {
      await act(!paused);
    } catch (err) {
      button.disabled = false;
      ctx.showError(err, where);
    }
  });
  return button;
}

function emptyCard(text, hint) {
  return h('div', { class: 'card' }, h('p', {}, text), hint ? h('p', { class: 'muted' }, hint) : null);
}

// ---------------------------------------------------------------------------- webhooks

function filterText(hook) {
  return [
    hook.state_machine ? machineLink(hook.state_machine) : h('span', { class: 'muted' }, 'every state machine'),
    h('div', { class: 'small-text' }, hook.statuses.length ? hook.statuses.join(', ') : h('span', { class: 'muted' }, 'every status')),
  ];
}

export async function webhooksPage(ctx) {
  const list = await get('/webhooks', { signal: ctx.signal });
  const byName = new Map(list.map((w) => [w.name, w]));
  const body = h('tbody', {});
  const row = (hook) => h('tr', { 'data-name': hook.name },
    h('td', {}, h('a', { href: `/ui/webhooks/${enc(hook.name)}` }, hook.name)),
    h('td', {}, h('code', { class: 'url' }, hook.url)),
    h('td', {}, filterText(hook)),
    h('td', { class: 'hook-state' }, enabledBadge(hook.enabled)),
    h('td', {}, fmtTime(hook.created_at)),
    h('td', {}, toggleButton({
      paused: !hook.enabled, label: `webhook ${hook.name}`, ctx, where: `Webhook ${hook.name}`,
      act: async (on) => {
        const changed = await post(`/webhooks/${enc(hook.name)}/${on ? 'pause' : 'resume'}`, {}, { signal: ctx.signal });
        byName.set(changed.name, changed);
        redraw(changed.name);
      },
    })));
  const redraw = (focusName) => {
    replace(body, [...byName.values()].map(row));
    if (focusName) body.querySelector(`tr[data-name="${CSS.escape(focusName)}"] button`)?.focus();
  };
  redraw();
  replace(ctx.main,
    h('h1', {}, 'Webhooks'),
    h('p', { class: 'muted' }, 'Status webhooks: each execution status change is posted (signed) to the URLs that subscribe to it.'),
    list.length
      ? h('table', { class: 'list webhooks' },
        h('caption', { class: 'sr-only' }, 'Status webhooks'),
        h('thead', {}, h('tr', {}, ['Name', 'Target URL', 'Filter', 'State', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
        body)
      : emptyCard('No webhooks yet.', 'Create one with POST /api/v1/webhooks.'));
}

function deliveryState(d) {
  const [kind, icon] = DELIVERY[d.status] || ['aborted', '?'];
  const failing = d.status === 'PENDING' && d.attempts > 0;
  return [
    failing ? badge('Retrying', 'pending_redrive', '↻') : badge(d.status, kind, icon),
    failing ? h('div', { class: 'small-text muted' }, d.status) : null,
  ];
}

function lastAnswer(d) {
  const bad = d.last_status_code !== null && (d.last_status_code < 200 || d.last_status_code >= 300);
  return [
    d.last_status_code !== null
      ? h('span', { class: bad ? 'err-text code-num' : 'code-num' }, `HTTP ${d.last_status_code}`)
      : h('span', { class: 'muted' }, d.attempts ? 'no answer' : '—'),
    d.last_error ? h('div', { class: 'small-text err-text' }, d.last_error) : null,
  ];
}

export async function webhookPage(ctx) {
  const name = ctx.params[0];
  const status = ctx.query.get('status') || '';
  const before = ctx.query.get('before') || '';
  const limit = Math.min(1000, Number(ctx.query.get('limit')) || PAGE);
  let hook = await get(`/webhooks/${enc(name)}`, { signal: ctx.signal });

  const head = h('div', { class: 'page-head' });
  const drawHead = (focus) => {
    const button = toggleButton({
      paused: !hook.enabled, label: `webhook ${hook.name}`, id: 'toggle', ctx, where: `Webhook ${hook.name}`,
      act: async (on) => {
        hook = await post(`/webhooks/${enc(name)}/${on ? 'pause' : 'resume'}`, {}, { signal: ctx.signal });
        drawHead(true);
      },
    });
    replace(head,
      h('h1', {}, hook.name, ' ', enabledBadge(hook.enabled)),
      h('dl', { class: 'facts' },
        h('dt', {}, 'Target URL'), h('dd', {}, h('code', { class: 'url' }, hook.url)),
        h('dt', {}, 'Filter'), h('dd', {}, filterText(hook)),
        h('dt', {}, 'Created'), h('dd', {}, fmtTime(hook.created_at))),
      h('div', { class: 'actions' }, button,
        h('span', { class: 'muted small-text' }, hook.enabled
          ? 'Pausing stops new deliveries; those already written still go out.'
          : 'Paused: status changes write no deliveries until resumed.')));
    if (focus) button.focus();
  };
  drawHead(false);

  const note = h('p', { class: 'muted', 'aria-live': 'polite', id: 'delivery-note' });
  const holder = h('div', { class: 'table-holder' }, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const statusSelect = h('select', { id: 'f-delivery-status' }, h('option', { value: '' }, 'Any'),
    Object.keys(DELIVERY).map((st) => h('option', { value: st, selected: st === status }, st)));
  statusSelect.addEventListener('change', () => {
    ctx.navigate(`/ui/webhooks/${enc(name)}${query({ status: statusSelect.value, limit: limit === PAGE ? '' : limit })}`);
  });
  const refresh = h('button', { type: 'button', id: 'refresh-deliveries', onclick: () => load().catch((err) => ctx.showError(err, 'Loading deliveries')) }, 'Refresh');

  const redeliver = async (d, button) => {
    button.disabled = true;
    try {
      await post(`/webhooks/${enc(name)}/deliveries/${d.id}/redeliver`, {}, { signal: ctx.signal });
      note.textContent = `Delivery ${d.id} will be sent again as soon as a worker can.`;
      await load(d.id);
    } catch (err) {
      button.disabled = false;
      ctx.showError(err, `Redelivering ${d.id}`);
    }
  };

  const load = async (focusId) => {
    // One more than a page: whether there is an older page, without an empty last page.
    const found = await get(`/webhooks/${enc(name)}/deliveries${query({ status, before, limit: limit + 1 })}`, { signal: ctx.signal });
    const shown = found.slice(0, limit);
    if (!shown.length) {
      replace(holder, emptyCard(status || before ? 'No deliveries here.' : 'No deliveries yet.',
        status || before ? null : 'A delivery is written for each status change the webhook covers.'));
    } else {
      replace(holder, h('table', { class: 'list deliveries' },
        h('caption', { class: 'sr-only' }, 'Deliveries, newest first'),
        h('thead', {}, h('tr', {}, ['Delivery', 'Execution', 'Status change', 'Attempts', 'State', 'Last answer', 'Next attempt', 'Written', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, shown.map((d) => {
          const button = h('button', { type: 'button', class: 'small', 'data-redeliver': d.id, 'aria-label': `Redeliver delivery ${d.id}` }, 'Redeliver');
          button.addEventListener('click', () => redeliver(d, button));
          return h('tr', { 'data-id': d.id, 'data-status': d.status },
            h('td', { class: 'num' }, `#${d.id}`),
            h('td', {}, executionLink(d.execution_arn)),
            h('td', { class: 'nowrap' }, h('span', { 'aria-label': `to ${d.event_status}` }, '→ ', statusBadge(d.event_status))),
            h('td', { class: 'num' }, d.attempts),
            h('td', {}, deliveryState(d)),
            h('td', {}, lastAnswer(d)),
            h('td', {}, d.next_attempt_at ? fmtTime(d.next_attempt_at) : h('span', { class: 'muted' }, d.delivered_at ? `delivered ${fmtTime(d.delivered_at)}` : '—')),
            h('td', {}, fmtTime(d.created_at)),
            h('td', {}, button));
        }))));
      if (focusId) holder.querySelector(`[data-redeliver="${focusId}"]`)?.focus();
    }
    const links = [];
    const keep = { status, limit: limit === PAGE ? '' : limit };
    if (before) links.push(h('a', { href: `/ui/webhooks/${enc(name)}${query(keep)}`, class: 'button-link' }, '« Newest'));
    if (found.length > limit) {
      links.push(h('a', { href: `/ui/webhooks/${enc(name)}${query({ ...keep, before: shown[shown.length - 1].id })}`, class: 'button-link', rel: 'next', id: 'next-page' }, 'Older »'));
    }
    replace(pager, links);
  };

  replace(ctx.main,
    h('p', { class: 'crumbs' }, h('a', { href: '/ui/webhooks' }, 'Webhooks'), ' / '),
    head,
    h('h2', {}, 'Delivery log'),
    h('div', { class: 'toolbar' }, h('label', { for: 'f-delivery-status' }, 'State'), statusSelect, refresh),
    note, holder, pager);
  await load();
}

// ---------------------------------------------------------------------------- schedules

/** The schedules table (the schedules page, and a state machine's page). */
export function scheduleTable(list, ctx, { machineColumn = true } = {}) {
  const byName = new Map(list.map((sc) => [sc.name, sc]));
  const body = h('tbody', {});
  const row = (sc) => {
    const paused = sc.state !== 'ENABLED';
    const next = (sc.next_fire_times || [])[0];
    return h('tr', { 'data-name': sc.name },
      h('td', {}, sc.name, sc.description ? h('div', { class: 'muted small-text' }, sc.description) : null),
      h('td', {}, h('code', {}, sc.expression), h('div', { class: 'muted small-text' }, sc.timezone)),
      machineColumn ? h('td', {}, machineLink(sc.state_machine)) : null,
      h('td', {}, paused ? h('span', { class: 'muted' }, 'paused') : (next ? fmtTime(next) : h('span', { class: 'muted' }, 'none'))),
      h('td', {}, sc.last_fire_at ? fmtTime(sc.last_fire_at) : h('span', { class: 'muted' }, 'never'),
        sc.last_execution_arn ? h('div', { class: 'small-text' }, executionLink(sc.last_execution_arn)) : null,
        sc.last_error ? h('div', { class: 'small-text err-text' }, sc.last_error) : null),
      h('td', { class: 'schedule-state' }, paused ? badge('Paused', 'aborted', '⏸') : badge('Enabled', 'succeeded', '✓')),
      h('td', {}, toggleButton({
        paused, label: `schedule ${sc.name}`, ctx, where: `Schedule ${sc.name}`,
        act: async (on) => {
          const changed = await post(`/schedules/${enc(sc.name)}/${on ? 'pause' : 'resume'}`, {}, { signal: ctx.signal });
          byName.set(changed.name, changed);
          redraw(changed.name);
        },
      })));
  };
  const redraw = (focusName) => {
    replace(body, [...byName.values()].map(row));
    if (focusName) body.querySelector(`tr[data-name="${CSS.escape(focusName)}"] button`)?.focus();
  };
  redraw();
  const heads = ['Name', 'Expression', machineColumn ? 'State machine' : null, 'Next run', 'Last run', 'State', ''].filter((t) => t !== null);
  return h('table', { class: 'list schedules' },
    h('caption', { class: 'sr-only' }, 'Schedules'),
    h('thead', {}, h('tr', {}, heads.map((t) => h('th', { scope: 'col' }, t)))),
    body);
}

export async function schedulesPage(ctx) {
  const machine = ctx.query.get('state_machine') || '';
  const list = await get(`/schedules${query({ state_machine: machine })}`, { signal: ctx.signal });
  replace(ctx.main,
    h('h1', {}, 'Schedules', machine ? h('span', { class: 'muted' }, ` of ${machine}`) : null),
    machine ? h('p', {}, h('a', { href: '/ui/schedules', class: 'button-link' }, 'All schedules')) : null,
    list.length ? scheduleTable(list, ctx) : emptyCard('No schedules yet.', 'Create one with POST /api/v1/schedules.'));
}

/** The schedules that start a state machine, for its page (nothing when there are none). */
export async function machineSchedules(ctx, name, holder) {
  const list = await get(`/schedules${query({ state_machine: name })}`, { signal: ctx.signal });
  if (!list.length) {
    replace(holder);
    return;
  }
  replace(holder, h('section', { class: 'card machine-schedules', 'aria-labelledby': 'machine-schedules-title' },
    h('h2', { id: 'machine-schedules-title' }, 'Schedules that start it'),
    scheduleTable(list, ctx, { machineColumn: false })));
}

// ---------------------------------------------------------------------------- connections

export async function connectionsPage(ctx) {
  const list = await get('/connections', { signal: ctx.signal });
  replace(ctx.main,
    h('h1', {}, 'Connections'),
    h('p', { class: 'muted' }, 'How HTTP tasks authenticate. Secrets are sealed on the server and never shown.'),
    list.length
      ? h('table', { class: 'list connections' },
        h('caption', { class: 'sr-only' }, 'Connections'),
        h('thead', {}, h('tr', {}, ['Name', 'Type', 'Parameters', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, list.map((c) => h('tr', { 'data-name': c.name },
          h('td', {}, c.name, h('div', { class: 'small-text' }, h('code', { class: 'arn' }, c.arn))),
          h('td', {}, c.type),
          h('td', {}, Object.keys(c.parameters || {}).length
            ? h('dl', { class: 'facts params' }, Object.entries(c.parameters).map(([k, v]) => [h('dt', {}, k), h('dd', {}, h('code', {}, v))]))
            : h('span', { class: 'muted' }, 'none')),
          h('td', {}, fmtTime(c.created_at))))))
      : emptyCard('No connections yet.', 'Create one with POST /api/v1/connections.'));
}
