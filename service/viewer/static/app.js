// The viewer's shell: URL routing (History API; every view has a shareable URL with its
// filters in the query string), the sign-in form for servers that need an API key, and the
// error banner. Pages live in their own modules.

import { ApiError, apiKey, get, setApiKey } from './api.js';
import { h, replace } from './dom.js';
import { machinesPage, machinePage } from './machines.js';
import { executionsPage } from './executions.js';
import { executionPage } from './execution.js';
import { connectionsPage, schedulesPage, webhookPage, webhooksPage } from './ops.js';

const ROUTES = [
  [/^\/(?:ui\/?)?$/, machinesPage, 'state-machines'],
  [/^\/ui\/state-machines\/?$/, machinesPage, 'state-machines'],
  [/^\/ui\/state-machines\/([^/]+)\/?$/, machinePage, 'state-machines'],
  [/^\/ui\/executions\/?$/, executionsPage, 'executions'],
  [/^\/ui\/executions\/([^/]+)\/?$/, executionPage, 'executions'],
  [/^\/ui\/webhooks\/?$/, webhooksPage, 'webhooks'],
  [/^\/ui\/webhooks\/([^/]+)\/?$/, webhookPage, 'webhooks'],
  [/^\/ui\/schedules\/?$/, schedulesPage, 'schedules'],
  [/^\/ui\/connections\/?$/, connectionsPage, 'connections'],
];

const main = document.getElementById('main');
const banner = document.getElementById('banner');
let current = null; // {controller, cleanup}

/** Show an error to the user (never swallowed). Sign-in errors open the sign-in form. */
export function showError(err, where) {
  if (err && err.name === 'AbortError') return;
  if (err instanceof ApiError && err.auth) {
    signIn(err);
    return;
  }
  console.warn(where || 'error', err);
  const message = err instanceof Error ? err.message : String(err);
  banner.append(h('div', { class: 'error-banner' },
    h('span', { 'aria-hidden': 'true' }, '✗ '),
    h('strong', {}, where ? `${where}: ` : 'Error: '), message,
    h('button', { type: 'button', class: 'small close', 'aria-label': 'Dismiss', onclick: (ev) => ev.target.closest('.error-banner').remove() }, '×')));
}

export function clearErrors() {
  replace(banner);
}

function updateWho() {
  const who = document.getElementById('who');
  const key = apiKey();
  if (!key) {
    replace(who);
    return;
  }
  replace(who, h('span', { class: 'muted' }, `Key ${key.split(':')[0]}`), ' ',
    h('button', { type: 'button', class: 'small', onclick: () => { setApiKey(''); updateWho(); render(); } }, 'Sign out'));
}

function signIn(err) {
  if (document.getElementById('signin')) return;
  if (current) current.controller.abort();
  clearErrors();
  const input = h('input', {
    id: 'signin-key', type: 'password', autocomplete: 'off', spellcheck: 'false', required: true,
    placeholder: 'SWK…:secret', 'aria-describedby': 'signin-help',
  });
  const message = h('p', { class: 'form-error', role: 'alert' });
  const form = h('form', { id: 'signin', class: 'card signin', 'aria-labelledby': 'signin-title' },
    h('h1', { id: 'signin-title' }, 'Sign in'),
    h('p', { id: 'signin-help' },
      apiKey() ? 'The server refused this API key: ' : 'This server needs an API key: ',
      h('span', { class: 'muted' }, err.message), '. Paste a key as ', h('code', {}, 'ID:SECRET'),
      ' (make one with ', h('code', {}, 'statewright keys create'),
      '). It is kept in this tab only (sessionStorage) and sent with each request.'),
    h('label', { for: 'signin-key' }, 'API key'), input, message,
    h('div', { class: 'actions' }, h('button', { type: 'submit', class: 'primary' }, 'Sign in')));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const key = input.value.trim();
    if (!/^[^:\s]+:\S+$/.test(key)) {
      message.textContent = 'An API key looks like ID:SECRET (the id, a colon, the secret).';
      return;
    }
    const previous = apiKey();
    setApiKey(key);
    try {
      await get('/state-machines');
    } catch (e) {
      setApiKey(previous);
      message.textContent = e instanceof ApiError && e.auth ? `Refused: ${e.message}` : e.message;
      return;
    }
    updateWho();
    render();
  });
  replace(main, form);
  input.focus();
}

function parse() {
  const path = location.pathname;
  for (const [re, page, section] of ROUTES) {
    const m = re.exec(path);
    if (m) return { page, section, params: m.slice(1).map(decodeURIComponent) };
  }
  return null;
}

/** Go to a viewer URL without reloading. */
export function navigate(url, { replace: swap = false } = {}) {
  if (swap) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

/** Change the query string of the current view without re-rendering it (tabs, selections). */
export function setQuery(changes, { push = false } = {}) {
  const q = new URLSearchParams(location.search);
  for (const [k, v] of Object.entries(changes)) {
    if (v === null || v === undefined || v === '') q.delete(k);
    else q.set(k, v);
  }
  const text = q.toString();
  const url = `${location.pathname}${text ? `?${text}` : ''}`;
  if (url === `${location.pathname}${location.search}`) return;
  if (push) history.pushState(null, '', url);
  else history.replaceState(null, '', url);
}

export async function render() {
  if (current) {
    current.controller.abort();
    if (current.cleanup) current.cleanup();
  }
  clearErrors();
  updateWho();
  const route = parse();
  for (const a of document.querySelectorAll('nav a[data-section]')) {
    if (route && a.dataset.section === route.section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const controller = new AbortController();
  current = { controller, cleanup: null };
  const mine = current;
  if (!route) {
    replace(main, h('h1', {}, 'Not found'), h('p', {}, 'No viewer page at this address. ',
      h('a', { href: '/ui/state-machines' }, 'State machines')));
    return;
  }
  const ctx = {
    main, params: route.params, query: new URLSearchParams(location.search),
    signal: controller.signal, navigate, setQuery, showError,
    onCleanup: (fn) => { mine.cleanup = fn; },
  };
  replace(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    await route.page(ctx);
  } catch (err) {
    if (controller.signal.aborted) return;
    if (err instanceof ApiError && err.auth) {
      signIn(err);
      return;
    }
    if (err instanceof ApiError && err.status === 404) {
      // Something the address names does not exist (or no longer does): say what, and
      // where to go instead, rather than an empty page.
      const [what, back, label] = route.section === 'executions'
        ? ['execution', '/ui/executions', 'All executions']
        : route.section === 'state-machines'
          ? ['state machine', '/ui/state-machines', 'All state machines']
          : ['page', '/ui/state-machines', 'State machines'];
      replace(main, h('div', { class: 'not-found', role: 'alert' },
        h('h1', {}, `No such ${what}`),
        h('p', {}, `There is no ${what} `, h('code', {}, route.params[0] || location.pathname),
          ' on this server. ', h('span', { class: 'muted' }, err.message)),
        h('p', {}, h('a', { href: back }, label))));
      return;
    }
    replace(main, h('h1', {}, 'Could not load this page'));
    showError(err);
  }
}

document.addEventListener('click', (ev) => {
  if (ev.defaultPrevented || ev.button !== 0 || ev.metaKey || ev.ctrlKey || ev.shiftKey || ev.altKey) return;
  const a = ev.target.closest('a[href]');
  if (!a || a.target || a.hasAttribute('download')) return;
  const url = new URL(a.href, location.href);
  if (url.origin !== location.origin || !(url.pathname === '/' || url.pathname.startsWith('/ui/'))) return;
  if (url.pathname === location.pathname && url.search === location.search && url.hash) return;
  ev.preventDefault();
  navigate(url.pathname + url.search);
  main.focus({ preventScroll: true });
  window.scrollTo(0, 0);
});

window.addEventListener('popstate', () => render());
window.addEventListener('unhandledrejection', (ev) => showError(ev.reason));
render();
