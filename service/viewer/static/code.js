// JSON text shown with line numbers and the validator's diagnostics on their lines, and a
// line diff of two texts (Myers' O(ND) algorithm).

import { h } from './dom.js';

const SEVERITY_ICON = { ERROR: '✗', WARNING: '⚠', INFO: 'ℹ' };

function severity(d) {
  return String(d.severity || 'ERROR').toUpperCase();
}

/** The text with a gutter; each diagnostic that has a line is shown under that line. */
export function codeView(text, diagnostics = []) {
  const byLine = new Map();
  for (const d of diagnostics) {
    if (Number.isInteger(d.line) && d.line > 0) (byLine.get(d.line) || byLine.set(d.line, []).get(d.line)).push(d);
  }
  const lines = text.split('\n');
  const rows = [];
  lines.forEach((line, i) => {
    const found = byLine.get(i + 1);
    const worst = found ? (found.some((d) => severity(d) === 'ERROR') ? 'ERROR' : severity(found[0])) : null;
    rows.push(h('div', { class: `code-line${worst ? ` has-${worst.toLowerCase()}` : ''}`, id: `L${i + 1}` },
      h('span', { class: 'ln', 'aria-hidden': 'true' }, String(i + 1)),
      h('span', { class: 'mark', 'aria-hidden': 'true' }, worst ? SEVERITY_ICON[worst] || '!' : ''),
      h('span', { class: 'src' }, line || ' ')));
    for (const d of found || []) {
      rows.push(h('div', { class: `code-diag sev-${severity(d).toLowerCase()}`, role: 'note' },
        h('span', { class: 'ln' }),
        h('span', { class: 'mark', 'aria-hidden': 'true' }, SEVERITY_ICON[severity(d)] || '!'),
        h('span', { class: 'src' },
          `${severity(d)} ${d.code || ''} at line ${d.line}${d.column ? `, column ${d.column}` : ''}: ${d.message}${d.location ? ` (${d.location})` : ''}`)));
    }
  });
  return h('div', { class: 'code', role: 'region', 'aria-label': 'Definition', tabindex: '0' }, rows);
}

/** The diagnostics as a list (each line-linked one jumps to its line). */
export function diagnosticList(diagnostics, scrollTarget) {
  if (!diagnostics.length) return h('p', { class: 'ok-note' }, '✓ No diagnostics: the definition is valid.');
  return h('ul', { class: 'diagnostics', 'aria-label': 'Diagnostics' }, diagnostics.map((d) => {
    const where = d.line ? `line ${d.line}${d.column ? `:${d.column}` : ''}` : (d.location || 'definition');
    const jump = d.line ? h('a', {
      href: `#L${d.line}`,
      onclick: (ev) => {
        ev.preventDefault();
        const target = (scrollTarget || document).querySelector(`#L${d.line}`);
        if (target) target.scrollIntoView({ block: 'center' });
      },
    }, where) : where;
    return h('li', { class: `sev-${severity(d).toLowerCase()}` },
      h('span', { 'aria-hidden': 'true' }, `${SEVERITY_ICON[severity(d)] || '!'} `),
      `${severity(d)} `, h('code', {}, d.code || ''), ' ', jump, `: ${d.message}`,
      d.location && d.line ? h('span', { class: 'muted' }, ` (${d.location})`) : null);
  }));
}

/** Line diff: [{op: ' '|'-'|'+', a, b, text}] turning `a` into `b`. */
export function diffLines(aText, bText, maxEdits = 4000) {
  const a = aText.split('\n');
  const b = bText.split('\n');
  // Common prefix and suffix first: versions of one definition mostly share them.
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start++;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) { endA--; endB--; }
  const A = a.slice(start, endA);
  const B = b.slice(start, endB);
  const middle = myers(A, B, maxEdits);
  const out = [];
  for (let i = 0; i < start; i++) out.push({ op: ' ', a: i + 1, b: i + 1, text: a[i] });
  for (const m of middle) {
    out.push({ op: m.op, a: m.a === null ? null : m.a + start + 1, b: m.b === null ? null : m.b + start + 1, text: m.text });
  }
  for (let i = endA, j = endB; i < a.length; i++, j++) out.push({ op: ' ', a: i + 1, b: j + 1, text: a[i] });
  return out;
}

function myers(a, b, maxEdits) {
  const n = a.length;
  const m = b.length;
  const max = n + m;
  if (max === 0) return [];
  const offset = max + 1;
  let v = new Int32Array(2 * max + 3);
  const trace = [];
  let found = -1;
  for (let d = 0; d <= Math.min(max, maxEdits); d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      let x = (k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1])) ? v[offset + k + 1] : v[offset + k - 1] + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) { x++; y++; }
      v[offset + k] = x;
      if (x >= n && y >= m) { found = d; break; }
    }
    if (found >= 0) break;
  }
  if (found < 0) {
    // Too different to be worth it: everything out, everything in.
    return [...a.map((text, i) => ({ op: '-', a: i, b: null, text })), ...b.map((text, j) => ({ op: '+', a: null, b: j, text }))];
  }
  const ops = [];
  let x = n;
  let y = m;
  for (let d = found; d > 0; d--) {
    v = trace[d];
    const k = x - y;
    const prevK = (k === -d || (k !== d && v[offset + k - 1] < v[offset + k + 1])) ? k + 1 : k - 1;
    const prevX = v[offset + prevK];
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) { x--; y--; ops.push({ op: ' ', a: x, b: y, text: a[x] }); }
    if (x === prevX) { y--; ops.push({ op: '+', a: null, b: y, text: b[y] }); }
    else { x--; ops.push({ op: '-', a: x, b: null, text: a[x] }); }
  }
  while (x > 0 && y > 0) { x--; y--; ops.push({ op: ' ', a: x, b: y, text: a[x] }); }
  return ops.reverse();
}

/** A diff as rows, unchanged runs longer than 2×context folded. */
export function diffView(rows, context = 3) {
  const changed = rows.map((r) => r.op !== ' ');
  const near = new Array(rows.length).fill(false);
  changed.forEach((c, i) => {
    if (!c) return;
    for (let j = Math.max(0, i - context); j <= Math.min(rows.length - 1, i + context); j++) near[j] = true;
  });
  const out = [];
  let skipped = 0;
  const flush = () => {
    if (skipped) out.push(h('div', { class: 'diff-fold' }, `… ${skipped} unchanged line${skipped === 1 ? '' : 's'}`));
    skipped = 0;
  };
  rows.forEach((r, i) => {
    if (!near[i]) { skipped++; return; }
    flush();
    const cls = r.op === '+' ? 'add' : r.op === '-' ? 'del' : 'same';
    out.push(h('div', { class: `diff-line ${cls}` },
      h('span', { class: 'ln' }, r.a ?? ''), h('span', { class: 'ln' }, r.b ?? ''),
      h('span', { class: 'op', 'aria-label': r.op === '+' ? 'added' : r.op === '-' ? 'removed' : 'unchanged' }, r.op),
      h('span', { class: 'src' }, r.text || ' ')));
  });
  flush();
  const adds = rows.filter((r) => r.op === '+').length;
  const dels = rows.filter((r) => r.op === '-').length;
  return h('div', { class: 'diff' },
    h('p', { class: 'diff-stat' }, h('span', { class: 'add-text' }, `+${adds}`), ' ', h('span', { class: 'del-text' }, `−${dels}`),
      adds + dels === 0 ? ' — the two versions are identical' : ''),
    h('div', { class: 'code diff-body', tabindex: '0', role: 'region', 'aria-label': 'Diff' }, out));
}
