// The event history as a table: paged (100 rows a page, so 25,000 events cost the same as
// 100), filtered by type and state, each row expandable to its details, with "state at this
// event" (time travel) from a row.

import { fmtCount, fmtDuration, fmtTime, h, jsonBlock, parsePayload, replace } from './dom.js';

export const PAGE_SIZE = 100;
const PAYLOAD_FIELDS = new Set(['input', 'output', 'parameters', 'result']);

function detailsOf(event) {
  const key = Object.keys(event).find((k) => k.endsWith('EventDetails'));
  return key ? event[key] : null;
}

/** The event with its JSON-text payloads parsed, for reading. */
export function readable(event) {
  const out = {};
  for (const [k, v] of Object.entries(event)) {
    if (k.endsWith('EventDetails') && v && typeof v === 'object') {
      const d = {};
      for (const [dk, dv] of Object.entries(v)) {
        if (PAYLOAD_FIELDS.has(dk)) d[dk] = parsePayload(dv);
        else if (dk === 'assignedVariables' && dv && typeof dv === 'object') {
          d[dk] = Object.fromEntries(Object.entries(dv).map(([n, t]) => [n, parsePayload(t)]));
        } else d[dk] = dv;
      }
      out[k] = d;
    } else out[k] = v;
  }
  return out;
}

export function eventKind(type) {
  if (/(Failed|TimedOut|Aborted)$/.test(type)) return 'bad';
  if (/(Succeeded|Exited)$/.test(type)) return 'good';
  if (/Retry|Redriven/.test(type)) return 'retry';
  return '';
}

/**
 * The history store the page appends to: events in id order plus, per event, the state it
 * belongs to (its own name for StateEntered/Exited, else that of the event it follows
 * through previousEventId).
 */
export class History {
  constructor() {
    this.events = [];
    this.stateOf = [];
    this.byId = new Map();
    this.types = new Map();
    this.stateNames = new Map();
    this.listeners = new Set();
  }

  get last() {
    return this.events.length ? this.events[this.events.length - 1].id : 0;
  }

  append(list) {
    let added = 0;
    for (const ev of list) {
      if (!ev || typeof ev.id !== 'number' || this.byId.has(ev.id) || ev.id <= this.last) continue;
      const d = detailsOf(ev);
      let state = d && typeof d.name === 'string' && /State(Entered|Exited)$/.test(ev.type) ? d.name : '';
      if (!state && ev.previousEventId) {
        const prev = this.byId.get(ev.previousEventId);
        if (prev !== undefined) state = this.stateOf[prev];
      }
      this.byId.set(ev.id, this.events.length);
      this.events.push(ev);
      this.stateOf.push(state);
      this.types.set(ev.type, (this.types.get(ev.type) || 0) + 1);
      if (state) this.stateNames.set(state, (this.stateNames.get(state) || 0) + 1);
      added++;
    }
    if (added) for (const fn of this.listeners) fn();
    return added;
  }

  get(id) {
    const i = this.byId.get(id);
    return i === undefined ? null : this.events[i];
  }

  state(id) {
    const i = this.byId.get(id);
    return i === undefined ? '' : this.stateOf[i];
  }

  /** The state's last entry at or before `upTo` and the exit that follows it. */
  visit(name, upTo = Infinity) {
    let entered = null;
    for (let i = this.events.length - 1; i >= 0; i--) {
      const ev = this.events[i];
      if (ev.id > upTo || !ev.type.endsWith('StateEntered')) continue;
      if (detailsOf(ev)?.name === name) { entered = ev; break; }
    }
    if (!entered) return null;
    let exited = null;
    for (let i = this.byId.get(entered.id) + 1; i < this.events.length; i++) {
      const ev = this.events[i];
      if (ev.type.endsWith('StateExited') && detailsOf(ev)?.name === name) { exited = ev; break; }
    }
    return { entered, exited, input: parsePayload(detailsOf(entered)?.input), output: exited ? parsePayload(detailsOf(exited)?.output) : undefined };
  }
}

/**
 * The table. `opts`: {history, filters: {type, state, page, event}, onChange(filters),
 * onTimeTravel(eventId)}. Returns {el, refresh(), reveal(eventId)}.
 */
export function eventTable({ history, filters, onChange, onTimeTravel }) {
  const f = { type: filters.type || '', state: filters.state || '', page: Number(filters.page) || 0, event: Number(filters.event) || 0 };
  const typeSelect = h('select', { id: 'ev-type', 'aria-label': 'Event type' });
  const stateSelect = h('select', { id: 'ev-state', 'aria-label': 'State' });
  const info = h('span', { class: 'muted', 'aria-live': 'polite' });
  const goto = h('input', { id: 'ev-goto', type: 'number', min: 1, class: 'narrow', placeholder: 'id', 'aria-label': 'Go to event id' });
  const body = h('tbody', {});
  const pager = h('div', { class: 'pager' });
  const table = h('table', { class: 'list events', 'aria-label': 'Event history' },
    h('thead', {}, h('tr', {}, ['ID', 'Type', 'State', 'Time', 'Elapsed'].map((t) => h('th', { scope: 'col' }, t)))), body);
  let matching = [];
  const start = () => (history.events.length ? new Date(history.events[0].timestamp).getTime() : 0);

  const options = (select, counts, value, all) => {
    const entries = [...counts.entries()].sort((a, b) => a[0].localeCompare(b[0]));
    if (value && !counts.has(value)) entries.unshift([value, 0]);
    replace(select, h('option', { value: '' }, all),
      entries.map(([k, n]) => h('option', { value: k, selected: k === value }, `${k} (${fmtCount(n)})`)));
  };

  const compute = () => {
    matching = [];
    const evs = history.events;
    for (let i = 0; i < evs.length; i++) {
      if (f.type && evs[i].type !== f.type) continue;
      if (f.state && history.stateOf[i] !== f.state) continue;
      matching.push(i);
    }
  };

  const pages = () => Math.max(1, Math.ceil(matching.length / PAGE_SIZE));

  const changed = () => onChange && onChange({ type: f.type, state: f.state, page: f.page || null, event: f.event || null });

  const detailRow = (ev) => {
    const tt = h('button', { type: 'button', class: 'small', 'data-event': ev.id }, 'State at this event');
    tt.addEventListener('click', () => onTimeTravel && onTimeTravel(ev.id));
    return h('tr', { class: 'event-detail' }, h('td', { colspan: 5 },
      h('div', { class: 'detail-actions' }, tt), jsonBlock(readable(ev), `Event ${ev.id}: ${ev.type}`)));
  };

  const toggle = (row, ev) => {
    const open = row.getAttribute('aria-expanded') === 'true';
    for (const r of body.querySelectorAll('tr[aria-expanded=true]')) {
      r.setAttribute('aria-expanded', 'false');
      r.nextElementSibling?.classList.contains('event-detail') && r.nextElementSibling.remove();
    }
    if (!open) {
      row.setAttribute('aria-expanded', 'true');
      row.after(detailRow(ev));
      f.event = ev.id;
    } else f.event = 0;
    changed();
  };

  const draw = () => {
    options(typeSelect, history.types, f.type, 'All types');
    options(stateSelect, history.stateNames, f.state, 'All states');
    if (f.page >= pages()) f.page = pages() - 1;
    const t0 = start();
    const rows = [];
    const from = f.page * PAGE_SIZE;
    for (const i of matching.slice(from, from + PAGE_SIZE)) {
      const ev = history.events[i];
      const at = new Date(ev.timestamp).getTime();
      const row = h('tr', { class: `event-row ${eventKind(ev.type)}`, tabindex: '0', 'aria-expanded': 'false', 'data-id': ev.id },
        h('td', { class: 'num' }, ev.id),
        h('td', {}, ev.type),
        h('td', {}, history.stateOf[i] || ''),
        h('td', {}, fmtTime(ev.timestamp)),
        h('td', { class: 'num' }, `+${fmtDuration(at - t0)}`));
      rows.push(row);
      if (ev.id === f.event) {
        row.setAttribute('aria-expanded', 'true');
        rows.push(detailRow(ev));
      }
    }
    const focused = body.contains(document.activeElement) ? document.activeElement.closest('tr.event-row')?.dataset.id : null;
    replace(body, rows.length ? rows : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No event matches.')));
    if (focused) body.querySelector(`tr[data-id="${focused}"]`)?.focus({ preventScroll: true });
    info.textContent = `${fmtCount(matching.length)} of ${fmtCount(history.events.length)} events`;
    const button = (label, page, disabled, id) => h('button', {
      type: 'button', class: 'small', disabled, id,
      onclick: () => { f.page = page; draw(); changed(); },
    }, label);
    replace(pager,
      button('« First', 0, f.page === 0, 'ev-first'), button('‹ Prev', f.page - 1, f.page === 0, 'ev-prev'),
      h('span', {}, ` Page ${f.page + 1} of ${pages()} `),
      button('Next ›', f.page + 1, f.page >= pages() - 1, 'ev-next'), button('Last »', pages() - 1, f.page >= pages() - 1, 'ev-last'));
  };

  body.addEventListener('click', (ev) => {
    const row = ev.target.closest('tr.event-row');
    if (row) toggle(row, history.get(Number(row.dataset.id)));
  });
  body.addEventListener('keydown', (ev) => {
    const row = ev.target.closest('tr.event-row');
    if (!row || ev.target !== row) return;
    if (ev.key === 'Enter' || ev.key === ' ') {
      ev.preventDefault();
      toggle(row, history.get(Number(row.dataset.id)));
    } else if (ev.key === 'ArrowDown' || ev.key === 'ArrowUp') {
      ev.preventDefault();
      let next = ev.key === 'ArrowDown' ? row.nextElementSibling : row.previousElementSibling;
      while (next && !next.classList.contains('event-row')) next = ev.key === 'ArrowDown' ? next.nextElementSibling : next.previousElementSibling;
      next?.focus();
    }
  });
  typeSelect.addEventListener('change', () => { f.type = typeSelect.value; f.page = 0; compute(); draw(); changed(); });
  stateSelect.addEventListener('change', () => { f.state = stateSelect.value; f.page = 0; compute(); draw(); changed(); });

  /** Show the page holding event `id` (filters cleared when it does not match) and open it. */
  const reveal = (id) => {
    const i = history.byId.get(id);
    if (i === undefined) return false;
    let at = matching.indexOf(i);
    if (at < 0) {
      f.type = '';
      f.state = '';
      compute();
      at = matching.indexOf(i);
    }
    f.page = Math.floor(at / PAGE_SIZE);
    f.event = id;
    draw();
    changed();
    body.querySelector(`tr[data-id="${id}"]`)?.focus();
    return true;
  };
  goto.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      if (!reveal(Number(goto.value))) info.textContent = `No event ${goto.value} (yet).`;
    }
  });

  compute();
  const el = h('div', { class: 'event-table' },
    h('div', { class: 'toolbar' },
      h('label', { for: 'ev-type' }, 'Type '), typeSelect,
      h('label', { for: 'ev-state' }, 'State '), stateSelect,
      h('label', { for: 'ev-goto' }, 'Event '), goto, info),
    table, pager);
  draw();
  // New events (live) only redraw when they can change what is on screen.
  const refresh = () => {
    const before = matching.length;
    compute();
    const lastPage = f.page >= Math.floor(Math.max(0, before - 1) / PAGE_SIZE);
    if (lastPage || matching.length !== before) draw();
  };
  return { el, refresh, reveal };
}
