// The executions list: filters (all in the query string, so a filtered view can be shared),
// search in inputs and outputs, the "stuck" filter, cursor pages, bulk stop and redrive.

import { enc, get, post, query, request } from './api.js';
import { fmtCount, fmtDuration, fmtTime, h, replace, statusBadge } from './dom.js';

const STATUSES = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED', 'PENDING_REDRIVE'];
const FILTERS = ['state_machine', 'status', 'name_prefix', 'started_after', 'started_before', 'redrive_count', 'q', 'stuck_seconds'];
const PAGE = 50;

function toLocalInput(iso) {
  if (!iso) return '';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function smName(arn) {
  const parts = String(arn || '').split(':');
  return parts.length >= 7 ? parts[6] : String(arn || '');
}

function field(label, control, hint) {
  return h('div', { class: 'field' }, h('label', { for: control.id }, label), control, hint ? h('span', { class: 'hint' }, hint) : null);
}

export async function executionsPage(ctx) {
  const q = ctx.query;
  const filters = Object.fromEntries(FILTERS.map((k) => [k, q.get(k) || '']));
  const limit = Math.min(1000, Number(q.get('limit')) || PAGE);
  const cursor = q.get('cursor') || '';
  const machines = get('/state-machines', { signal: ctx.signal }).catch(() => []);

  const inputs = {
    state_machine: h('input', { id: 'f-state_machine', type: 'text', list: 'f-machines', value: filters.state_machine, autocomplete: 'off' }),
    status: h('select', { id: 'f-status' }, h('option', { value: '' }, 'Any'),
      STATUSES.map((st) => h('option', { value: st, selected: st === filters.status }, st.replace('_', ' ')))),
    name_prefix: h('input', { id: 'f-name_prefix', type: 'text', value: filters.name_prefix }),
    started_after: h('input', { id: 'f-started_after', type: 'datetime-local', value: toLocalInput(filters.started_after) }),
    started_before: h('input', { id: 'f-started_before', type: 'datetime-local', value: toLocalInput(filters.started_before) }),
    redrive_count: h('input', { id: 'f-redrive_count', type: 'number', min: 0, value: filters.redrive_count, class: 'narrow' }),
    q: h('input', { id: 'f-q', type: 'search', value: filters.q, placeholder: 'text in input or output' }),
    stuck: h('input', { id: 'f-stuck', type: 'number', min: 1, class: 'narrow', value: filters.stuck_seconds ? String(Math.round(Number(filters.stuck_seconds) / 60)) : '' }),
  };
  const datalist = h('datalist', { id: 'f-machines' });
  machines.then((list) => replace(datalist, list.map((m) => h('option', { value: m.name }))));
  const form = h('form', { class: 'filters card', role: 'search', 'aria-label': 'Filter executions' },
    field('State machine', inputs.state_machine), datalist,
    field('Status', inputs.status),
    field('Name starts with', inputs.name_prefix),
    field('Started after', inputs.started_after),
    field('Started before', inputs.started_before),
    field('Redrives', inputs.redrive_count),
    field('Search', inputs.q),
    field('Stuck for (min)', inputs.stuck, 'no progress for longer'),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'primary' }, 'Apply'),
      h('a', { href: '/ui/executions', class: 'button-link' }, 'Clear')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const next = {
      state_machine: inputs.state_machine.value.trim(),
      status: inputs.status.value,
      name_prefix: inputs.name_prefix.value.trim(),
      started_after: inputs.started_after.value ? new Date(inputs.started_after.value).toISOString() : '',
      started_before: inputs.started_before.value ? new Date(inputs.started_before.value).toISOString() : '',
      redrive_count: inputs.redrive_count.value,
      q: inputs.q.value.trim(),
      stuck_seconds: inputs.stuck.value ? String(Math.round(Number(inputs.stuck.value) * 60)) : '',
    };
    if (limit !== PAGE) next.limit = limit;
    ctx.navigate(`/ui/executions${query(next)}`);
  });

  const countLine = h('p', { class: 'muted count-line', 'aria-live': 'polite' });
  const tableHolder = h('div', { class: 'table-holder' }, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages' });
  const results = h('div', { class: 'bulk-results', 'aria-live': 'polite' });
  const selected = new Set();
  const bulkBar = h('div', { class: 'bulk', role: 'toolbar', 'aria-label': 'Selected executions' });
  replace(ctx.main, h('h1', {}, 'Executions'), form, countLine, bulkBar, results, tableHolder, pager);

  const active = Object.fromEntries(Object.entries(filters).filter(([, v]) => v));
  get(`/executions/count${query(active)}`, { signal: ctx.signal }).then((c) => {
    countLine.textContent = `${c.capped ? 'More than ' : ''}${fmtCount(c.count)} execution${c.count === 1 ? '' : 's'} match`;
  }).catch((err) => ctx.showError(err, 'Counting executions'));

  const drawBulk = () => {
    const n = selected.size;
    const confirmArea = h('span', { class: 'confirm' });
    const ask = (action) => {
      replace(confirmArea, `${action === 'stop' ? 'Stop' : 'Redrive'} ${n} execution${n === 1 ? '' : 's'}? `,
        h('button', { type: 'button', class: 'danger', id: 'bulk-confirm', onclick: () => runBulk(action) }, 'Confirm'), ' ',
        h('button', { type: 'button', onclick: () => replace(confirmArea) }, 'Cancel'));
      confirmArea.querySelector('#bulk-confirm').focus();
    };
    replace(bulkBar,
      h('span', { class: 'muted' }, `${n} selected`),
      h('button', { type: 'button', id: 'bulk-stop', disabled: !n, onclick: () => ask('stop') }, 'Stop selected'),
      h('button', { type: 'button', id: 'bulk-redrive', disabled: !n, onclick: () => ask('redrive') }, 'Redrive selected'),
      confirmArea);
  };

  const runBulk = async (action) => {
    const ids = [...selected];
    try {
      const answer = await post(`/executions/bulk/${action}`, { ids }, { signal: ctx.signal });
      const failed = answer.results.filter((r) => !r.ok);
      replace(results, h('div', { class: failed.length ? 'card warn' : 'card ok' },
        h('p', {}, `${action === 'stop' ? 'Stop' : 'Redrive'}: ${answer.results.length - failed.length} of ${answer.results.length} accepted.`),
        failed.length ? h('ul', {}, failed.map((r) => h('li', {}, h('code', {}, r.id), `: ${r.message || r.code || 'refused'}${r.code ? ` (${r.code})` : ''}`))) : null));
      selected.clear();
      await load();
    } catch (err) {
      ctx.showError(err, `Bulk ${action}`);
    }
  };

  let rowsShown = [];
  const load = async () => {
    const res = await request(`/executions${query({ ...active, limit, cursor })}`, { signal: ctx.signal });
    const list = await res.json();
    const next = res.headers.get('Next-Cursor');
    rowsShown = list;
    drawTable(list);
    drawBulk();
    const params = new URLSearchParams(location.search);
    const links = [];
    if (cursor) {
      params.delete('cursor');
      links.push(h('a', { href: `/ui/executions${params.toString() ? `?${params}` : ''}`, class: 'button-link' }, '« Newest'));
    }
    if (next) {
      params.set('cursor', next);
      links.push(h('a', { href: `/ui/executions?${params}`, class: 'button-link', rel: 'next', id: 'next-page' }, 'Older »'));
    }
    replace(pager, links);
  };

  const drawTable = (list) => {
    if (!list.length) {
      replace(tableHolder, h('p', { class: 'card' }, Object.keys(active).length ? 'No execution matches these filters.' : 'No executions yet.'));
      return;
    }
    const all = h('input', { type: 'checkbox', 'aria-label': 'Select all on this page' });
    all.addEventListener('change', () => {
      for (const box of tableHolder.querySelectorAll('tbody input[type=checkbox]')) {
        box.checked = all.checked;
        if (all.checked) selected.add(box.value); else selected.delete(box.value);
      }
      drawBulk();
    });
    const now = Date.now();
    replace(tableHolder, h('table', { class: 'list executions' },
      h('caption', { class: 'sr-only' }, 'Executions, newest first'),
      h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, all),
        ['Name', 'Status', 'State machine', 'Started', 'Duration', 'Events', 'Redrives'].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, list.map((ex) => {
        const box = h('input', { type: 'checkbox', value: ex.id, checked: selected.has(ex.id), 'aria-label': `Select ${ex.name}` });
        box.addEventListener('change', () => {
          if (box.checked) selected.add(ex.id); else selected.delete(ex.id);
          drawBulk();
        });
        const end = ex.stopped_at ? new Date(ex.stopped_at).getTime() : now;
        const sm = smName(ex.state_machine_arn);
        return h('tr', { 'data-id': ex.id },
          h('td', {}, box),
          h('td', {}, h('a', { href: `/ui/executions/${enc(ex.id)}` }, ex.name),
            ex.error ? h('div', { class: 'small-text err-text' }, ex.error) : null),
          h('td', {}, statusBadge(ex.status)),
          h('td', {}, h('a', { href: `/ui/state-machines/${enc(sm)}` }, sm)),
          h('td', {}, fmtTime(ex.started_at)),
          h('td', { class: 'num' }, fmtDuration(end - new Date(ex.started_at).getTime())),
          h('td', { class: 'num' }, fmtCount(ex.events)),
          h('td', { class: 'num' }, ex.redrive_count ?? '—'));
      }))));
  };
  await load();
  return rowsShown;
}
