// Small DOM helpers. Data from the API only ever reaches the page as text nodes or attribute
// values (never as HTML), so an execution's input cannot inject markup.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) {
      // Handlers are functions; a string here would become inline script, so it is dropped.
      if (typeof value === 'function') el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (key === 'text') {
      el.textContent = value;
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'value' && 'value' in el) {
      el.value = value;
    } else if (key === 'checked' || key === 'selected' || key === 'disabled') {
      el[key] = Boolean(value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children) {
    if (child === undefined || child === null || child === false) continue;
    if (Array.isArray(child)) append(el, child);
    else el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h('a', {href: '/x', class: 'y'}, 'text', otherNode, [more]). */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.firstChild.remove();
  return el;
}

export function replace(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

/** JSON text as written for people (2-space indent); strings that hold JSON stay strings. */
export function pretty(value) {
  if (value === undefined) return '';
  return JSON.stringify(value, null, 2);
}

/** AWS writes payloads into events as JSON text: show them as JSON values when they are. */
export function parsePayload(text) {
  if (typeof text !== 'string') return text;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

const DATE = new Intl.DateTimeFormat(undefined, {
  year: 'numeric', month: '2-digit', day: '2-digit',
  hour: '2-digit', minute: '2-digit', second: '2-digit', hour12: false,
});

export function fmtTime(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  const ms = String(d.getMilliseconds()).padStart(3, '0');
  return `${DATE.format(d)}.${ms}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return '—';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s % 60)} s`;
  const hrs = Math.floor(m / 60);
  if (hrs < 48) return `${hrs} h ${m % 60} min`;
  return `${Math.floor(hrs / 24)} d ${hrs % 24} h`;
}

export function fmtCount(n) {
  return n === null || n === undefined ? '—' : Number(n).toLocaleString('en-US');
}

/** A <pre> of a JSON value, with a copy button. */
export function jsonBlock(value, label) {
  const text = typeof value === 'string' ? value : pretty(value);
  return h('div', { class: 'json-block' },
    h('div', { class: 'json-head' },
      label ? h('span', { class: 'json-label' }, label) : null,
      copyButton(text, 'Copy')),
    h('pre', { class: 'json', tabindex: '0', 'aria-label': label || 'JSON' }, text === '' ? '(none)' : text));
}

/** Put text on the clipboard; where the page is not a secure context, select it in a box. */
export async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return true;
  }
  const area = h('textarea', { class: 'offscreen', 'aria-hidden': 'true' }, text);
  document.body.append(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  return ok;
}

export function copyButton(text, label = 'Copy') {
  const button = h('button', { type: 'button', class: 'small' }, label);
  button.addEventListener('click', async () => {
    try {
      await copyText(typeof text === 'function' ? text() : text);
      button.textContent = 'Copied';
    } catch (err) {
      button.textContent = `Copy failed: ${err.message}`;
    }
    setTimeout(() => { button.textContent = label; }, 1500);
  });
  return button;
}

const STATUS_ICONS = {
  RUNNING: '●', SUCCEEDED: '✓', FAILED: '✗', TIMED_OUT: '⏱', ABORTED: '■',
  PENDING_REDRIVE: '↻',
};

/** An execution status as a badge: colour, icon and word (never colour alone). */
export function statusBadge(status) {
  const s = status || 'UNKNOWN';
  return h('span', { class: `badge st-${s.toLowerCase()}` },
    h('span', { 'aria-hidden': 'true' }, STATUS_ICONS[s] || '?'), ' ', s.replace('_', ' '));
}

/** Calls fn at most once per `ms` (trailing call kept). */
export function throttle(fn, ms) {
  let timer = null;
  let pending = false;
  return (...args) => {
    if (timer) { pending = true; return; }
    fn(...args);
    timer = setTimeout(function tick() {
      timer = null;
      if (pending) { pending = false; fn(...args); timer = setTimeout(tick, ms); }
    }, ms);
  };
}
