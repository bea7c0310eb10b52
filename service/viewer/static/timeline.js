// The timeline (Gantt): one row per state path, a bar per visit (a Map's iterations share
// their inner states' rows), a time axis on top. Drawn in SVG, with caps so that a Map of
// 10,000 iterations stays a picture rather than 10,000 rows.

import { fmtDuration, h, s } from './dom.js';

const LABEL_W = 240;
const ROW_H = 22;
const AXIS_H = 28;
const MAX_ROWS = 400;
const MAX_BARS = 6000;
const ICON = { succeeded: '✓', failed: '✗', caught: '⚠', retried: '↻', running: '●', not_reached: '○' };

function niceStep(span, target = 8) {
  const raw = span / target;
  const pow = 10 ** Math.floor(Math.log10(raw || 1));
  for (const m of [1, 2, 5, 10]) if (raw <= m * pow) return m * pow;
  return 10 * pow;
}

export function timelineEntries(answer) {
  if (Array.isArray(answer)) return { entries: answer, truncated: false };
  const entries = (answer && (answer.spans || answer.entries || answer.timeline)) || [];
  return { entries, truncated: Boolean(answer && answer.truncated), total: answer && answer.total };
}

/** `answer`: the /timeline response; `closedAt`: end of the execution (or now). */
export function renderTimeline(answer, { startedAt, closedAt, onSelect }) {
  const { entries, truncated, total } = timelineEntries(answer);
  if (!entries.length) return h('p', { class: 'muted' }, 'No state has been entered yet.');
  // The axis starts at the first state entered: the wait before a worker took the execution
  // up is said in words, not drawn as empty space.
  const started = new Date(startedAt).getTime();
  const t0 = Math.min(...entries.map((e) => new Date(e.entered_at).getTime()));
  const now = closedAt ? new Date(closedAt).getTime() : Date.now();
  let t1 = t0;
  for (const e of entries) {
    t1 = Math.max(t1, new Date(e.exited_at || e.entered_at).getTime());
  }
  t1 = Math.max(t1, now);
  const span = Math.max(1, t1 - t0);
  const rows = new Map();
  for (const e of entries) {
    if (!rows.has(e.path)) rows.set(e.path, { path: e.path, name: e.name, bars: [] });
    rows.get(e.path).bars.push(e);
  }
  const list = [...rows.values()].slice(0, MAX_ROWS);
  const width = 1000;
  const plotW = width - LABEL_W - 16;
  const height = AXIS_H + list.length * ROW_H + 8;
  const x = (t) => LABEL_W + ((t - t0) / span) * plotW;
  const svg = s('svg', { class: 'timeline', viewBox: `0 0 ${width} ${height}`, width: '100%', role: 'img', 'aria-label': 'Timeline of state durations' });
  const step = niceStep(span);
  const axis = s('g', { class: 'axis' });
  for (let t = 0; t <= span + 1e-9; t += step) {
    const px = x(t0 + t);
    axis.append(s('line', { x1: px, x2: px, y1: AXIS_H - 6, y2: height, class: 'tick' }),
      s('text', { x: px, y: AXIS_H - 10, 'text-anchor': 'middle' }, `+${fmtDuration(t)}`));
  }
  svg.append(axis);
  let drawn = 0;
  list.forEach((row, i) => {
    const y = AXIS_H + i * ROW_H;
    const depth = row.path.split('/').length - 1;
    const g = s('g', { class: 'tl-row', 'data-path': row.path });
    g.append(s('rect', { class: 'tl-band', x: 0, y, width, height: ROW_H }));
    const label = `${'  '.repeat(depth)}${row.name || row.path}${row.bars.length > 1 ? ` ×${row.bars.length}` : ''}`;
    g.append(s('text', { class: 'tl-label', x: 6 + depth * 10, y: y + 15 }, label.trim(), s('title', {}, row.path)));
    for (const bar of row.bars) {
      if (drawn >= MAX_BARS) break;
      drawn++;
      const a = new Date(bar.entered_at).getTime();
      const b = bar.exited_at ? new Date(bar.exited_at).getTime() : now;
      const status = bar.status || (bar.exited_at ? 'succeeded' : 'running');
      const w = Math.max(2, x(b) - x(a));
      g.append(s('rect', { class: `tl-bar st-${status}`, x: x(a), y: y + 4, width: w, height: ROW_H - 8, rx: 2 },
        s('title', {}, `${row.path}${bar.iteration !== undefined && bar.iteration !== null ? ` [iteration ${bar.iteration}]` : ''}: ${status}, ${fmtDuration(b - a)}`)));
      if (row.bars.length === 1 && w > 14) {
        g.append(s('text', { class: 'tl-icon', x: x(a) + 3, y: y + 15, 'aria-hidden': 'true' }, ICON[status] || ''));
      }
    }
    if (onSelect) {
      g.setAttribute('tabindex', '0');
      g.setAttribute('role', 'button');
      g.setAttribute('aria-label', `${row.path}: ${row.bars.length} visit${row.bars.length === 1 ? '' : 's'}`);
    }
    svg.append(g);
  });
  if (onSelect) {
    const fire = (ev) => {
      const g = ev.target.closest('g.tl-row');
      if (g) onSelect(g.dataset.path);
    };
    svg.addEventListener('click', fire);
    svg.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter' || ev.key === ' ') { ev.preventDefault(); fire(ev); }
    });
  }
  const notes = [];
  if (t0 - started >= 1) notes.push(`The first state was entered ${fmtDuration(t0 - started)} after the execution started; the axis counts from there.`);
  if (truncated) notes.push(`Showing the first ${entries.length.toLocaleString('en-US')} of ${total ? Number(total).toLocaleString('en-US') : 'more'} state visits.`);
  if (rows.size > MAX_ROWS) notes.push(`${rows.size - MAX_ROWS} more rows not drawn.`);
  if (drawn >= MAX_BARS) notes.push(`Only the first ${MAX_BARS} bars are drawn.`);
  return h('div', { class: 'timeline-wrap' },
    notes.length ? h('p', { class: 'muted' }, notes.join(' ')) : null,
    svg);
}
