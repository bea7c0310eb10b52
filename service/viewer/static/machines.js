// State machines: the list with execution counts, and one state machine's page (graph,
// definition with diagnostics, versions and their diff, the start-execution form).

import { ApiError, enc, get, post } from './api.js';
import { codeView, diagnosticList, diffLines, diffView } from './code.js';
import { copyButton, fmtCount, fmtTime, h, jsonBlock, pretty, replace, statusBadge } from './dom.js';
import { childPrefix, renderGraph } from './graph.js';
import { machineSchedules } from './ops.js';
import { boto3Start, curlStart } from './snippets.js';

const COUNTED = ['RUNNING', 'SUCCEEDED', 'FAILED', 'TIMED_OUT', 'ABORTED', 'PENDING_REDRIVE'];

export async function machinesPage(ctx) {
  const machines = await get('/state-machines/summary', { signal: ctx.signal });
  const rows = machines.map((m) => h('tr', {},
    h('td', {}, h('a', { href: `/ui/state-machines/${enc(m.name)}` }, m.name),
      m.description ? h('div', { class: 'muted small-text' }, m.description) : null),
    h('td', { class: 'num' }, `v${m.version}`),
    h('td', {}, m.status && m.status !== 'ACTIVE' ? statusBadge(m.status) : 'Active'),
    h('td', { class: 'counts' }, COUNTED.filter((st) => m.counts && m.counts[st]).map((st) =>
      h('a', { href: `/ui/executions?state_machine=${enc(m.name)}&status=${st}`, class: 'count-link', title: `${st} executions` },
        statusBadge(st), ' ', fmtCount(m.counts[st]))),
    !m.counts || COUNTED.every((st) => !m.counts[st]) ? h('span', { class: 'muted' }, 'none') : null),
    h('td', {}, fmtTime(m.created_at))));
  replace(ctx.main,
    h('h1', {}, 'State machines'),
    newMachineForm(ctx),
    machines.length
      ? h('table', { class: 'list' },
        h('caption', { class: 'sr-only' }, 'State machines and their executions by status'),
        h('thead', {}, h('tr', {}, ['Name', 'Latest version', 'Status', 'Executions', 'Created'].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, rows))
      : h('div', { class: 'card' }, h('p', {}, 'No state machines yet.'),
        h('p', { class: 'muted' }, 'Create one with ', h('code', {}, 'statewright apply'), ' or ',
          h('code', {}, 'POST /api/v1/state-machines'), '.')));
}

/** Upload a definition: a new state machine, or a new version of one of the same name (the
 * API publishes a version only when the definition changed). Validated by the server first;
 * a definition with an ERROR diagnostic is not sent. */
function newMachineForm(ctx) {
  const name = h('input', { id: 'new-name', type: 'text', maxlength: 80, required: true, spellcheck: 'false' });
  const text = h('textarea', {
    id: 'new-definition', class: 'editor', rows: 14, spellcheck: 'false',
    placeholder: '{"StartAt": "Hello", "States": {"Hello": {"Type": "Pass", "End": true}}}',
  });
  const file = h('input', { id: 'new-file', type: 'file', accept: '.json,application/json' });
  const message = h('p', { id: 'new-error', class: 'form-error', role: 'alert' });
  const found = h('div', {});
  const view = h('div', { class: 'code-wrap' });
  const show = async () => {
    const diagnostics = await validate(text.value, ctx.signal);
    replace(view, diagnostics.length ? codeView(text.value, diagnostics) : null);
    replace(found, diagnostics.length
      ? diagnosticList(diagnostics, view)
      : h('p', { class: 'muted' }, 'No diagnostics.'));
    return diagnostics;
  };
  file.addEventListener('change', async () => {
    const chosen = file.files && file.files[0];
    if (!chosen) return;
    text.value = await chosen.text();
    if (!name.value.trim()) name.value = chosen.name.replace(/(\.asl)?\.json$/i, '');
    show().catch((err) => ctx.showError(err, 'Validating'));
  });
  const check = h('button', { type: 'button' }, 'Validate');
  check.addEventListener('click', () => show().catch((err) => ctx.showError(err, 'Validating')));
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Create');
  const form = h('form', { class: 'new-machine', novalidate: true },
    h('label', { for: 'new-name' }, 'Name'), name,
    h('label', { for: 'new-definition' }, 'Definition (ASL JSON)'), text,
    h('label', { for: 'new-file' }, 'or a file'), file,
    message, found, view,
    h('div', { class: 'actions' }, check, submit));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    message.textContent = '';
    if (!name.value.trim()) {
      message.textContent = 'Give the state machine a name.';
      name.focus();
      return;
    }
    submit.disabled = true;
    try {
      const diagnostics = await show();
      if (diagnostics.some((d) => d.severity === 'ERROR')) {
        message.textContent = 'The definition has errors (below): fix them before creating it.';
        return;
      }
      const made = await post('/state-machines', { name: name.value.trim(), definition: JSON.parse(text.value) }, { signal: ctx.signal });
      ctx.navigate(`/ui/state-machines/${enc(made.name)}`);
    } catch (err) {
      if (err instanceof ApiError && !err.auth) message.textContent = `The server refused: ${err.message}`;
      else ctx.showError(err, 'Creating the state machine');
    } finally {
      submit.disabled = false;
    }
  });
  return h('details', { class: 'card', id: 'new-machine' }, h('summary', {}, 'New state machine (or a new version)'), form);
}

const TABS = [['graph', 'Graph'], ['definition', 'Definition'], ['versions', 'Versions'], ['start', 'Start execution']];

/** Tabs (WAI-ARIA tab pattern: arrows move between tabs); `show(key)` renders a panel. */
export function tabs(items, selected, show) {
  const panel = h('div', { class: 'tab-panel', role: 'tabpanel', tabindex: '-1' });
  const buttons = items.map(([key, label]) => h('button', {
    type: 'button', role: 'tab', id: `tab-${key}`, 'data-tab': key,
    'aria-selected': String(key === selected), tabindex: key === selected ? '0' : '-1',
  }, label));
  const pick = (key, focus) => {
    for (const b of buttons) {
      const on = b.dataset.tab === key;
      b.setAttribute('aria-selected', String(on));
      b.tabIndex = on ? 0 : -1;
      if (on && focus) b.focus();
    }
    panel.setAttribute('aria-labelledby', `tab-${key}`);
    show(key, panel);
  };
  const list = h('div', { class: 'tabs', role: 'tablist' }, buttons);
  list.addEventListener('click', (ev) => {
    const b = ev.target.closest('[role=tab]');
    if (b) pick(b.dataset.tab);
  });
  list.addEventListener('keydown', (ev) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0) return;
    if (ev.key === 'ArrowRight' || ev.key === 'ArrowLeft') {
      ev.preventDefault();
      const next = buttons[(i + (ev.key === 'ArrowRight' ? 1 : buttons.length - 1)) % buttons.length];
      pick(next.dataset.tab, true);
    }
  });
  pick(selected);
  return { el: h('div', { class: 'tabbed' }, list, panel), pick };
}

export async function machinePage(ctx) {
  const name = ctx.params[0];
  const version = ctx.query.get('version');
  const latest = await get(`/state-machines/${enc(name)}`, { signal: ctx.signal });
  const shown = version && Number(version) !== latest.version
    ? await get(`/state-machines/${enc(name)}/versions/${enc(version)}`, { signal: ctx.signal })
    : latest;
  const definition = shown.definition;
  const selected = TABS.some(([k]) => k === ctx.query.get('tab')) ? ctx.query.get('tab') : 'graph';
  const header = h('div', { class: 'page-head' },
    h('h1', {}, name, ' ', h('span', { class: 'muted' }, `v${shown.version}`),
      shown.version !== latest.version ? h('span', { class: 'tag' }, `latest is v${latest.version}`) : null),
    h('div', { class: 'head-meta' },
      h('code', { class: 'arn' }, latest.arn), copyButton(latest.arn, 'Copy ARN'),
      h('a', { class: 'button-link', href: `/ui/executions?state_machine=${enc(name)}` }, 'Executions'),
      h('a', { class: 'button-link', href: `/ui/schedules?state_machine=${enc(name)}` }, 'Schedules'),
      latest.status && latest.status !== 'ACTIVE' ? statusBadge(latest.status) : null),
    latest.description ? h('p', { class: 'muted' }, latest.description) : null);
  const { el } = tabs(TABS, selected, (key, panel) => {
    ctx.setQuery({ tab: key === 'graph' ? null : key });
    const views = { graph: graphTab, definition: definitionTab, versions: versionsTab, start: startTab };
    views[key](ctx, panel, { name, latest, shown, definition }).catch((err) => ctx.showError(err, 'Loading the tab'));
  });
  const schedules = h('div', {});
  replace(ctx.main, header, schedules, el);
  machineSchedules(ctx, name, schedules).catch((err) => ctx.showError(err, 'Loading the schedules'));
}

async function graphTab(ctx, panel, { definition }) {
  const detail = h('aside', { class: 'side card', 'aria-live': 'polite' },
    h('p', { class: 'muted' }, 'Select a state (click, or Tab to it and press Enter) to see its definition.'));
  const states = collectStates(definition);
  const graph = renderGraph(definition, {
    onSelect: (path) => {
      const st = states.get(path);
      replace(detail, h('h2', {}, path.split('/').pop()), h('p', { class: 'muted' }, path),
        jsonBlock(st || {}, 'State definition'));
    },
  });
  replace(panel, h('div', { class: 'split' }, graph.el, detail));
}

/** Every state of a definition by path (the same paths the graph uses). */
export function collectStates(definition, prefix = '', out = new Map()) {
  for (const [name, st] of Object.entries((definition && definition.States) || {})) {
    const path = prefix ? `${prefix}/${name}` : name;
    out.set(path, st);
    if (st && st.Type === 'Map' && (st.ItemProcessor || st.Iterator)) collectStates(st.ItemProcessor || st.Iterator, childPrefix(path, 'Map', 0), out);
    if (st && st.Type === 'Parallel') (st.Branches || []).forEach((b, i) => collectStates(b, childPrefix(path, 'Parallel', i), out));
  }
  return out;
}

async function validate(text, signal) {
  const found = await post('/validate', { definition: text }, { signal });
  return found.diagnostics || [];
}

async function definitionTab(ctx, panel, { definition }) {
  const text = pretty(definition);
  const view = h('div', { class: 'code-wrap' }, h('p', { class: 'muted' }, 'Validating…'));
  const diags = h('div', {});
  const editor = h('textarea', { id: 'edit-definition', class: 'editor', rows: 16, spellcheck: 'false' }, text);
  const check = h('button', { type: 'button' }, 'Validate the edited text');
  const show = async (source) => {
    const found = await validate(source, ctx.signal);
    replace(view, codeView(source, found));
    replace(diags, diagnosticList(found, view));
  };
  check.addEventListener('click', () => show(editor.value).catch((err) => ctx.showError(err, 'Validating')));
  replace(panel,
    h('h2', { class: 'sr-only' }, 'Definition'), diags, view,
    h('details', { class: 'card' }, h('summary', {}, 'Check an edited definition (not saved)'),
      h('label', { for: 'edit-definition' }, 'Definition (JSON)'), editor, h('div', { class: 'actions' }, check)));
  await show(text);
}

async function versionsTab(ctx, panel, { name }) {
  const versions = await get(`/state-machines/${enc(name)}/versions`, { signal: ctx.signal });
  if (!versions.length) {
    replace(panel, h('p', {}, 'No versions.'));
    return;
  }
  const numbers = versions.map((v) => v.version);
  let a = Number(ctx.query.get('a')) || (versions[1] || versions[0]).version;
  let b = Number(ctx.query.get('b')) || versions[0].version;
  if (!numbers.includes(a)) a = numbers[Math.min(1, numbers.length - 1)];
  if (!numbers.includes(b)) b = numbers[0];
  const out = h('div', {});
  const byNumber = new Map(versions.map((v) => [v.version, v]));
  const draw = () => {
    ctx.setQuery({ a, b });
    replace(out, h('h3', {}, `Changes from v${a} to v${b}`),
      diffView(diffLines(pretty(byNumber.get(a).definition), pretty(byNumber.get(b).definition))));
  };
  const radio = (side, v) => h('input', {
    type: 'radio', name: `side-${side}`, value: v.version, checked: (side === 'a' ? a : b) === v.version,
    'aria-label': `${side === 'a' ? 'From' : 'To'} version ${v.version}`,
    onchange: () => { if (side === 'a') a = v.version; else b = v.version; draw(); },
  });
  replace(panel,
    h('table', { class: 'list versions' },
      h('thead', {}, h('tr', {}, ['From', 'To', 'Version', 'Created', ''].map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, versions.map((v) => h('tr', {},
        h('td', {}, radio('a', v)), h('td', {}, radio('b', v)),
        h('td', { class: 'num' }, `v${v.version}`), h('td', {}, fmtTime(v.created_at)),
        h('td', {}, h('a', { href: `/ui/state-machines/${enc(name)}?version=${v.version}` }, 'View')))))),
    out);
  draw();
}

/** The offset where a JSON text stops being valid (browsers' messages do not all say). */
export function jsonErrorOffset(text) {
  let i = 0;
  const ws = () => { while (i < text.length && ' \t\n\r'.includes(text[i])) i++; };
  const fail = () => { throw i; };
  const literal = (word) => { if (text.startsWith(word, i)) i += word.length; else fail(); };
  const string = () => {
    i++;
    while (i < text.length && text[i] !== '"') {
      if (text[i] === '\\') {
        i++;
        if (text[i] === 'u') { if (!/^[0-9a-fA-F]{4}$/.test(text.slice(i + 1, i + 5))) fail(); i += 4; }
        else if (!'"\\/bfnrt'.includes(text[i] || 'x')) fail();
      } else if (text.charCodeAt(i) < 0x20) fail();
      i++;
    }
    if (i >= text.length) fail();
    i++;
  };
  const value = () => {
    ws();
    const c = text[i];
    if (c === '{') {
      i++; ws();
      if (text[i] === '}') { i++; return; }
      for (;;) {
        ws();
        if (text[i] !== '"') fail();
        string(); ws();
        if (text[i] !== ':') fail();
        i++; value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === '}') { i++; return; }
        fail();
      }
    } else if (c === '[') {
      i++; ws();
      if (text[i] === ']') { i++; return; }
      for (;;) {
        value(); ws();
        if (text[i] === ',') { i++; continue; }
        if (text[i] === ']') { i++; return; }
        fail();
      }
    } else if (c === '"') string();
    else if (c === 't') literal('true');
    else if (c === 'f') literal('false');
    else if (c === 'n') literal('null');
    else {
      const m = /^-?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i));
      if (!m) fail();
      i += m[0].length;
    }
  };
  try {
    value(); ws();
    return i < text.length ? i : null;
  } catch (at) {
    return typeof at === 'number' ? at : null;
  }
}

/** Why a text is not JSON, with the line and column where it stops being JSON. */
export function jsonError(text, err) {
  const at = jsonErrorOffset(text);
  let where = '';
  if (at !== null) {
    const before = text.slice(0, at).split('\n');
    where = ` (line ${before.length}, column ${before[before.length - 1].length + 1})`;
  }
  return `Not valid JSON${where}: ${err.message}`;
}

async function startTab(ctx, panel, { name, latest }) {
  const initial = ctx.query.get('input') || '{}';
  const input = h('textarea', { id: 'start-input', class: 'editor', rows: 12, spellcheck: 'false', 'aria-describedby': 'start-input-error' }, initial);
  const execName = h('input', { id: 'start-name', type: 'text', maxlength: 80, placeholder: '(generated)' });
  const error = h('p', { id: 'start-input-error', class: 'form-error', role: 'alert' });
  const snippets = h('div', { class: 'snippets' });
  const parsed = () => {
    try {
      const value = JSON.parse(input.value);
      error.textContent = '';
      input.removeAttribute('aria-invalid');
      return { ok: true, value };
    } catch (err) {
      error.textContent = jsonError(input.value, err);
      input.setAttribute('aria-invalid', 'true');
      return { ok: false };
    }
  };
  input.addEventListener('input', () => parsed());
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Start execution');
  const form = h('form', { class: 'card start-form', novalidate: true },
    h('label', { for: 'start-name' }, 'Execution name (optional)'), execName,
    h('label', { for: 'start-input' }, 'Input (JSON)'), input, error,
    h('div', { class: 'actions' }, submit,
      copyButton(() => { const p = parsed(); return curlStart(name, p.ok ? p.value : null, execName.value.trim()); }, 'Copy as curl'),
      copyButton(() => { const p = parsed(); return boto3Start(latest.arn, p.ok ? p.value : null, execName.value.trim()); }, 'Copy as boto3')),
    snippets);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const p = parsed();
    if (!p.ok) {
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const body = { input: p.value };
      if (execName.value.trim()) body.name = execName.value.trim();
      const started = await post(`/state-machines/${enc(name)}/executions`, body, { signal: ctx.signal });
      ctx.navigate(`/ui/executions/${enc(started.id)}`);
    } catch (err) {
      if (err instanceof ApiError && !err.auth) error.textContent = `The server refused: ${err.message}`;
      else ctx.showError(err, 'Starting the execution');
    } finally {
      submit.disabled = false;
    }
  });
  replace(panel, form);
}
