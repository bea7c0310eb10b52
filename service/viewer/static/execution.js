// One execution: header with actions, the graph coloured by outcome, the event table, the
// timeline, input and output, time travel, and live updates while it runs (the stream
// route, with polling when the stream is not available).

import { ApiError, enc, get, post, request, stream } from './api.js';
import {
  fmtCount, fmtDuration, fmtTime, h, jsonBlock, replace, statusBadge, throttle, copyButton,
} from './dom.js';
import { History, eventTable } from './events.js';
import { STATUSES, legend, renderGraph } from './graph.js';
import { smName } from './executions.js';
import { tabs } from './machines.js';
import { boto3Start, curlStart } from './snippets.js';
import { renderTimeline } from './timeline.js';

const PAGE = 1000;
const POLL_MS = 2000;
const REDRIVABLE = new Set(['FAILED', 'TIMED_OUT', 'ABORTED']);
const TABS = [['graph', 'Graph'], ['events', 'Events'], ['timeline', 'Timeline'], ['io', 'Input & output']];
const STATUS_LABEL = Object.fromEntries(STATUSES.map(([k, l]) => [k, l]));

export async function executionPage(ctx) {
  const id = ctx.params[0];
  const base = `/executions/${enc(id)}`;
  const [first, machine] = await Promise.all([
    get(base, { signal: ctx.signal }),
    get(`/executions/${enc(id)}/state-machine`, { signal: ctx.signal }),
  ]);
  const model = { ex: first, machine, states: {}, transitions: [], timeline: null, history: new History(), loading: true };
  const live = { mode: 'closed', controller: null, timer: null };
  ctx.onCleanup(() => {
    if (live.controller) live.controller.abort();
    clearTimeout(live.timer);
  });

  const head = h('div', { class: 'page-head' });
  const failure = h('div', {});
  const liveEl = h('span', { class: 'live', 'aria-live': 'polite' });
  const progress = h('span', { class: 'muted', 'aria-live': 'polite' });

  // --- header
  const drawHead = () => {
    const ex = model.ex;
    const sm = machine.name || smName(ex.state_machine_arn);
    const end = ex.stopped_at ? new Date(ex.stopped_at).getTime() : Date.now();
    const actions = [];
    if (ex.status === 'RUNNING') {
      actions.push(h('button', { type: 'button', id: 'stop', class: 'danger', onclick: () => act('stop') }, 'Stop'));
    }
    if (REDRIVABLE.has(ex.status)) {
      actions.push(h('button', { type: 'button', id: 'redrive', onclick: () => act('redrive') }, 'Redrive'));
    }
    actions.push(
      copyButton(() => curlStart(sm, model.ex.input), 'Copy as curl'),
      copyButton(() => boto3Start(machine.arn || ex.state_machine_arn, model.ex.input), 'Copy as boto3'),
      h('button', { type: 'button', id: 'download', onclick: download }, 'Download history'));
    replace(head,
      h('h1', {}, ex.name, ' ', statusBadge(ex.status), ' ', liveEl),
      h('dl', { class: 'facts' },
        h('dt', {}, 'State machine'), h('dd', {}, h('a', { href: `/ui/state-machines/${enc(sm)}${machine.version ? `?version=${machine.version}` : ''}` }, sm),
          machine.version ? h('span', { class: 'muted' }, ` v${machine.version}`) : null),
        h('dt', {}, 'Started'), h('dd', {}, fmtTime(ex.started_at)),
        h('dt', {}, 'Stopped'), h('dd', {}, fmtTime(ex.stopped_at)),
        h('dt', {}, 'Duration'), h('dd', {}, fmtDuration(end - new Date(ex.started_at).getTime())),
        h('dt', {}, 'Events'), h('dd', {}, fmtCount(ex.events), ' ', progress),
        ex.redrive_count ? [h('dt', {}, 'Redrives'), h('dd', {}, ex.redrive_count)] : null),
      h('div', { class: 'actions' }, actions));
    replace(failure, ex.error || ex.cause
      ? h('div', { class: 'card failure', role: 'region', 'aria-label': 'Failure' },
        h('strong', {}, h('span', { 'aria-hidden': 'true' }, '✗ '), ex.error || 'Error'),
        ex.cause ? h('pre', { class: 'cause' }, ex.cause) : null)
      : null);
  };

  const act = async (action) => {
    try {
      await post(`${base}/${action}`, {}, { signal: ctx.signal });
      await refresh();
      if (action === 'redrive') startLive();
    } catch (err) {
      ctx.showError(err, action === 'stop' ? 'Stopping' : 'Redriving');
    }
  };

  const download = async () => {
    try {
      const res = await request(`${base}/history/download`, { signal: ctx.signal });
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const a = h('a', { href: url, download: `${model.ex.name}-history.json` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      ctx.showError(err, 'Downloading the history');
    }
  };

  // --- data
  const fetchStates = () => get(`${base}/states`, { signal: ctx.signal });
  const applyStates = (answer) => {
    model.states = answer.states || {};
    model.transitions = answer.transitions || [];
  };
  const loadStates = async () => applyStates(await fetchStates());

  const loadHistory = async () => {
    for (;;) {
      const page = await get(`${base}/history?after=${model.history.last}&limit=${PAGE}`, { signal: ctx.signal });
      model.history.append(page);
      progress.textContent = model.history.events.length < (model.ex.events || 0)
        ? `(loaded ${fmtCount(model.history.events.length)})` : '';
      if (page.length < PAGE) break;
    }
    model.loading = false;
    progress.textContent = '';
  };

  // Refreshes overlap (an action's, the stream's, the throttled one): an answer to an older
  // request that arrives after a newer one's is dropped, or a page that saw ABORTED could
  // show RUNNING again and stay so once the stream has closed.
  let refreshesAsked = 0;
  let refreshShown = 0;
  const refresh = async () => {
    const ticket = ++refreshesAsked;
    const [ex, states] = await Promise.all([get(base, { signal: ctx.signal }), fetchStates()]);
    if (ticket < refreshShown) return;
    refreshShown = ticket;
    model.ex = ex;
    applyStates(states);
    drawHead();
    views.redraw();
  };
  const refreshSoon = throttle(() => refresh().catch((err) => ctx.showError(err, 'Updating')), 800);

  // --- live updates
  const setLive = (mode) => {
    live.mode = mode;
    const text = { stream: '● Live', polling: '● Live (polling)', closed: '' }[mode];
    liveEl.textContent = text;
    liveEl.className = `live ${mode}`;
  };

  const poll = async () => {
    try {
      const page = await get(`${base}/history?after=${model.history.last}&limit=${PAGE}`, { signal: ctx.signal });
      model.history.append(page);
      await refresh();
    } catch (err) {
      if (err.name === 'AbortError') return;
      ctx.showError(err, 'Polling for updates');
    }
    if (model.ex.status === 'RUNNING' && !ctx.signal.aborted) live.timer = setTimeout(poll, POLL_MS);
    else setLive('closed');
  };

  const startLive = async () => {
    if (model.ex.status !== 'RUNNING' || live.mode !== 'closed') return;
    live.controller = new AbortController();
    ctx.signal.addEventListener('abort', () => live.controller.abort());
    setLive('stream');
    try {
      await stream(`${base}/stream?after=${model.history.last}`, (message) => {
        let data = null;
        try { data = JSON.parse(message.data); } catch { data = null; }
        if (data && typeof data.id === 'number' && typeof data.type === 'string') model.history.append([data]);
        else if (Array.isArray(data)) model.history.append(data);
        refreshSoon();
      }, live.controller.signal);
      setLive('closed');
      await refresh();
      if (model.ex.status === 'RUNNING') {
        setLive('polling');
        poll();
      }
    } catch (err) {
      if (live.controller.signal.aborted) return;
      // No stream (an older server, a proxy that buffers): poll instead.
      if (err instanceof ApiError && err.auth) {
        setLive('closed');
        ctx.showError(err);
        return;
      }
      setLive('polling');
      poll();
    }
  };

  // --- views
  let graphView = null;
  let table = null;
  let current = null;
  const sidebar = h('aside', { class: 'side card', 'aria-live': 'polite' });
  const travel = h('div', { class: 'travel' });
  const panes = {};

  const stateDetails = (path) => {
    ctx.setQuery({ state: path });
    const info = model.states[path];
    const name = path.split('/').pop();
    const visit = model.history.visit(name, info && info.last_event_id ? info.last_event_id : Infinity);
    const facts = [];
    const fact = (k, v) => { if (v !== undefined && v !== null && v !== '') facts.push(h('dt', {}, k), h('dd', {}, v)); };
    if (info) {
      fact('Status', h('span', { class: `state-status st-${info.status}` }, STATUS_LABEL[info.status] || info.status));
      fact('Entered', info.entered);
      fact('Exited', info.exited);
      fact('Retries', info.retries);
      fact('Caught', info.caught);
      fact('First entered', fmtTime(info.first_entered_at));
      fact('Last exited', info.last_exited_at ? fmtTime(info.last_exited_at) : null);
      fact('Duration', info.duration_ms !== null && info.duration_ms !== undefined ? fmtDuration(info.duration_ms) : null);
      if (info.last_event_id) {
        fact('Last event', h('button', { type: 'button', class: 'link', onclick: () => showEvent(info.last_event_id) }, `#${info.last_event_id}`));
      }
    } else {
      fact('Status', STATUS_LABEL.not_reached);
    }
    const it = info && info.iterations;
    replace(sidebar,
      h('h2', {}, name), h('p', { class: 'muted small-text' }, path),
      h('dl', { class: 'facts' }, facts),
      info && (info.error || info.cause) ? h('div', { class: 'failure' },
        h('strong', {}, info.error || 'Error'), info.cause ? h('pre', { class: 'cause' }, info.cause) : null) : null,
      it ? h('div', { class: 'iterations-box' },
        h('h3', {}, 'Iterations'),
        h('p', {}, `${fmtCount(it.total)} in total: ✓ ${fmtCount(it.succeeded)} succeeded, ✗ ${fmtCount(it.failed)} failed, ● ${fmtCount(it.running)} running, ■ ${fmtCount(it.aborted)} aborted`),
        (it.failed_indexes || []).length ? h('div', {},
          h('p', {}, 'Failed iterations:'),
          h('ul', { class: 'chips' }, it.failed_indexes.slice(0, 200).map((i) => h('li', {},
            h('button', { type: 'button', class: 'small', onclick: () => showIteration(i) }, `#${i}`)))),
          it.failed_indexes.length > 200 ? h('p', { class: 'muted' }, `… and ${it.failed_indexes.length - 200} more`) : null) : null) : null,
      visit ? [jsonBlock(visit.input, `Input (event ${visit.entered.id})`),
        visit.exited ? jsonBlock(visit.output, `Output (event ${visit.exited.id})`) : h('p', { class: 'muted' }, 'No output yet.')]
        : h('p', { class: 'muted' }, model.loading ? 'Loading the history…' : 'Not entered: no input or output.'));
  };

  const showEvent = (eventId) => {
    picker.pick('events', true);
    if (table) table.reveal(eventId);
  };

  const showIteration = (index) => {
    const found = model.history.events.find((ev) => ev.type === 'MapIterationFailed'
      && ev.mapIterationFailedEventDetails && ev.mapIterationFailedEventDetails.index === index);
    if (found) showEvent(found.id);
    else ctx.showError(new Error(`No MapIterationFailed event for iteration ${index} in the loaded history`), 'Iteration');
  };

  const timeTravel = async (eventId) => {
    ctx.setQuery({ at: eventId });
    replace(travel, h('p', { class: 'muted' }, `Loading the state at event ${eventId}…`));
    try {
      const at = await get(`${base}/state-at/${eventId}`, { signal: ctx.signal });
      replace(travel, h('div', { class: 'card travel-card', id: 'time-travel' },
        h('h2', {}, `State at event ${at.event_id}`, at.event_type ? h('span', { class: 'muted' }, ` (${at.event_type})`) : null),
        h('dl', { class: 'facts' },
          h('dt', {}, 'State'), h('dd', {}, at.state || '—'),
          h('dt', {}, 'Status'), h('dd', {}, at.status || '—')),
        h('div', { class: 'grid3' },
          jsonBlock(at.variables ?? {}, 'Variables'),
          jsonBlock(at.input, 'Input'),
          jsonBlock(at.output, 'Output')),
        h('button', { type: 'button', class: 'small', onclick: () => { replace(travel); ctx.setQuery({ at: null }); } }, 'Close')));
      travel.querySelector('h2').scrollIntoView({ block: 'nearest' });
    } catch (err) {
      replace(travel);
      ctx.showError(err, `State at event ${eventId}`);
    }
  };

  const views = {
    graph(panel) {
      const selected = new URLSearchParams(location.search).get('state');
      const focused = document.activeElement?.closest?.('g.node')?.dataset.path;
      const scroller = panel.querySelector('.graph-wrap');
      const scroll = scroller ? [scroller.scrollLeft, scroller.scrollTop] : null;
      graphView = renderGraph(machine.definition, { states: model.states, transitions: model.transitions, onSelect: stateDetails });
      replace(panel, h('div', { class: 'split' },
        h('div', {}, legend(), graphView.el), sidebar));
      if (scroll) graphView.el.querySelector('.graph-wrap').scrollTo(scroll[0], scroll[1]);
      if (selected && graphView.nodes.has(selected)) {
        graphView.select(selected);
        stateDetails(selected);
      } else if (!sidebar.firstChild) {
        replace(sidebar, h('p', { class: 'muted' }, 'Select a state (click, or Tab to it and press Enter) for its input, output, error and timings.'));
      }
      if (focused) graphView.nodes.get(focused)?.focus({ preventScroll: true });
    },
    events(panel) {
      if (!table) {
        table = eventTable({
          history: model.history,
          filters: { type: ctx.query.get('type'), state: ctx.query.get('state_filter'), page: ctx.query.get('page'), event: ctx.query.get('event') },
          onChange: (f) => ctx.setQuery({ type: f.type, state_filter: f.state, page: f.page, event: f.event }),
          onTimeTravel: timeTravel,
        });
        model.history.listeners.add(() => table.refresh());
      }
      replace(panel, travel, table.el);
    },
    timeline(panel) {
      replace(panel, h('p', { class: 'muted' }, 'Loading the timeline…'));
      get(`${base}/timeline`, { signal: ctx.signal }).then((answer) => {
        if (current !== 'timeline') return;
        replace(panel, renderTimeline(answer, {
          startedAt: model.ex.started_at, closedAt: model.ex.stopped_at,
          onSelect: (path) => { ctx.setQuery({ state: path }); picker.pick('graph', true); },
        }));
      }).catch((err) => ctx.showError(err, 'Loading the timeline'));
    },
    io(panel) {
      replace(panel, h('div', { class: 'grid2' },
        jsonBlock(model.ex.input, 'Input'),
        model.ex.status === 'RUNNING' ? h('p', { class: 'muted' }, 'No output yet: the execution is running.') : jsonBlock(model.ex.output, 'Output')));
    },
    redraw() {
      if (current && current !== 'events' && current !== 'timeline') views[current](panes.panel);
    },
  };

  const picked = TABS.some(([k]) => k === ctx.query.get('tab')) ? ctx.query.get('tab') : 'graph';
  // Everything the first view needs, then the history in the background (25,000 events is
  // 25 pages; the graph and the first rows of the table are drawn before it is all here).
  await loadStates();
  drawHead();
  const firstPage = loadHistory().catch((err) => ctx.showError(err, 'Loading the history'));
  const picker = tabs(TABS, picked, (key, panel) => {
    current = key;
    panes.panel = panel;
    ctx.setQuery({ tab: key === 'graph' ? null : key });
    views[key](panel);
  });
  replace(ctx.main, head, failure, picker.el);
  model.history.listeners.add(throttle(() => {
    if (current === 'graph') {
      const sel = new URLSearchParams(location.search).get('state');
      if (sel) stateDetails(sel);
    }
  }, 500));
  await firstPage;
  if (ctx.query.get('at')) timeTravel(Number(ctx.query.get('at')));
  startLive();
}
