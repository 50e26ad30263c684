// The page's frame: state kept in the URL's fragment (so a link shows the same view,
// filter and range), the filter bar (inline errors at the API's position, history),
// the time range, the navigation, the "agent unreachable" banner and the keyboard
// shortcuts.  Each view (flows.js, charts.js, health.js) and the flow detail
// (detail.js) draws itself from the state.

import { getJSON, onLinkChange, retryNow, setToken, linkState } from './api.js';
import { el, replace, cpToIndex } from './util.js';
import { FlowsView } from './flows.js';
import { ChartsView } from './charts.js';
import { HealthView } from './health.js';
import { Detail } from './detail.js';

const DEFAULTS = {
  view: 'flows', filter: '', range: 'all', from: '', to: '', order: '-id', limit: '100',
  cols: '', live: '', flow: '', metric: 'bytes', talkers: 'ip',
};
const PRESETS = new Set(['all', '5m', '15m', '1h', '6h', '24h', '7d', 'custom']);
const HISTORY_KEY = 'podcap.history';
const HISTORY_MAX = 30;

const $ = (id) => document.getElementById(id);
let state = { ...DEFAULTS };
let views = {};
let detail = null;

// ---- state <-> URL ----------------------------------------------------------

function parseHash() {
  const p = new URLSearchParams(location.hash.replace(/^#/, ''));
  const s = { ...DEFAULTS };
  for (const k of Object.keys(DEFAULTS)) {
    const v = p.get(k);
    if (v !== null) s[k] = v.slice(0, 8192);
  }
  if (!['flows', 'charts', 'health'].includes(s.view)) s.view = 'flows';
  if (!PRESETS.has(s.range)) s.range = 'all';
  if ((s.from || s.to) && s.range === 'all') s.range = 'custom';
  return s;
}

function hashOf(s) {
  const p = new URLSearchParams();
  for (const k of Object.keys(DEFAULTS)) {
    if (s[k] !== DEFAULTS[k] && s[k] !== undefined && s[k] !== null) p.set(k, s[k]);
  }
  const h = p.toString();
  return h ? '#' + h : '#';
}

// Changes the state, writes it to the URL (a new history entry when push, so Back
// undoes a filter or a view change) and redraws what depends on it.
export function setState(patch, { push = true } = {}) {
  const next = { ...state, ...patch };
  if (next.range !== 'custom') {
    next.from = '';
    next.to = '';
  }
  const h = hashOf(next);
  if (h !== (location.hash || '#')) {
    if (push) history.pushState(null, '', h);
    else history.replaceState(null, '', h);
  }
  apply(next);
}

// The API's from/to for the state's range.
export function rangeParams(s = state) {
  if (s.range === 'custom') return { from: s.from.trim(), to: s.to.trim() };
  if (s.range === 'all') return { from: '', to: '' };
  return { from: '-' + s.range, to: '' };
}

export function getState() {
  return state;
}

// ---- the filter bar -----------------------------------------------------------

function syncControls(s) {
  const f = $('filter');
  if (document.activeElement !== f || f.value.trim() === '') f.value = s.filter;
  else if (f.dataset.applied !== s.filter) f.value = s.filter;
  f.dataset.applied = s.filter;
  $('range').value = s.range;
  $('custom-range').hidden = s.range !== 'custom';
  $('from').value = s.from;
  $('to').value = s.to;
  $('live').checked = s.live === '1';
  $('live').closest('label').hidden = s.view !== 'flows';
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.dataset.view === s.view) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
    // Links carry the filter and range, so opening a view in a new tab keeps them.
    a.href = hashOf({ ...s, view: a.dataset.view, flow: '' });
  }
}

function submitQuery(ev) {
  if (ev) ev.preventDefault();
  const filter = $('filter').value.trim();
  const range = $('range').value;
  const patch = { filter, range, flow: state.flow };
  if (range === 'custom') {
    patch.from = $('from').value.trim();
    patch.to = $('to').value.trim();
  }
  clearFilterError();
  // Submitting the same query again refreshes it (the views compare query keys).
  const same = filter === state.filter && range === state.range &&
    (range !== 'custom' || (patch.from === state.from && patch.to === state.to));
  performance.mark('podcap-submit', { detail: { filter } });
  setState(patch);
  if (same) views[state.view].refresh(true);
}

// The API's filter error, shown under the box with the offending text marked at the
// position the API gave (code points from 1; the end of the filter is one past it).
export function showFilterError(err, filterText) {
  const box = $('filter-error');
  const input = $('filter');
  const msg = err.message || 'bad filter';
  if (err.position === null || err.position === undefined) {
    replace(box, el('span', { class: 'msg' }, msg));
    box.hidden = false;
    input.setAttribute('aria-invalid', 'true');
    return;
  }
  const text = filterText;
  const start = cpToIndex(text, err.position);
  let len = 0;
  const quoted = err.found && /^'(.*)'$/s.exec(err.found);
  if (quoted && text.startsWith(quoted[1], start)) len = quoted[1].length;
  else if (start < text.length) len = Array.from(text.slice(start))[0].length;
  const markText = len > 0 ? text.slice(start, start + len) : ' ';
  const echo = el('code', { class: 'echo' },
    text.slice(0, start),
    el('mark', { class: len > 0 ? '' : 'at-end', title: err.found || '' }, markText),
    text.slice(start + len));
  replace(box,
    echo,
    el('span', { class: 'msg' }, msg));
  box.dataset.position = String(err.position);
  box.hidden = false;
  input.setAttribute('aria-invalid', 'true');
  // Put the caret where the problem is, so fixing it is one keystroke away.
  if (document.activeElement === input || document.activeElement === document.body) {
    input.focus();
    input.setSelectionRange(start, start + len);
  }
}

export function clearFilterError() {
  const box = $('filter-error');
  box.hidden = true;
  delete box.dataset.position;
  clear(box);
  $('filter').removeAttribute('aria-invalid');
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

function loadHistory() {
  try {
    const h = JSON.parse(localStorage.getItem(HISTORY_KEY) || '[]');
    return Array.isArray(h) ? h.filter((x) => typeof x === 'string').slice(0, HISTORY_MAX) : [];
  } catch {
    return [];
  }
}

// A filter the API accepted goes to the front of the history (once).
export function addHistory(filter) {
  if (!filter) return;
  const h = [filter, ...loadHistory().filter((x) => x !== filter)].slice(0, HISTORY_MAX);
  try { localStorage.setItem(HISTORY_KEY, JSON.stringify(h)); } catch { /* private mode */ }
  drawHistory(h);
}

function drawHistory(h = loadHistory()) {
  replace($('filter-history'), h.map((f) => el('option', { value: f })));
  replace($('history-body'), h.length === 0 ? el('p', { class: 'hint' }, 'No filters used yet.')
    : el('ul', { class: 'history' }, h.map((f) => el('li', null, el('button', {
      type: 'button', class: 'link mono',
      on: { click: () => { $('fields-dialog').close(); setState({ filter: f }); } },
    }, f)))));
}

// ---- the fields dialog --------------------------------------------------------

let fieldsLoaded = false;
async function openFields() {
  const dlg = $('fields-dialog');
  drawHistory();
  dlg.showModal();
  if (fieldsLoaded) return;
  const body = $('fields-body');
  replace(body, el('p', { class: 'hint' }, 'Loading…'));
  try {
    const fields = await getJSON('/api/v1/fields');
    fieldsLoaded = true;
    replace(body, el('div', { class: 'table-scroll' }, el('table', { class: 'kv fields' },
      el('thead', null, el('tr', null, el('th', null, 'field'), el('th', null, 'type'),
        el('th', null, 'operators'), el('th', null, 'meaning'))),
      el('tbody', null, (Array.isArray(fields) ? fields : []).map((f) => el('tr', null,
        el('td', null, el('button', {
          type: 'button', class: 'link mono',
          on: { click: () => insertField(String(f.name)) },
        }, String(f.name))),
        el('td', null, String(f.type || '')),
        el('td', { class: 'mono' }, String(f.operators || '')),
        el('td', null, String(f.description || ''))))))));
  } catch (e) {
    replace(body, el('p', { class: 'error' }, 'Could not load the fields: ' + e.message));
  }
}

function insertField(name) {
  const input = $('filter');
  const v = input.value.trim();
  input.value = v ? `${v} and ${name} ` : `${name} `;
  $('fields-dialog').close();
  input.focus();
  input.setSelectionRange(input.value.length, input.value.length);
}

// ---- the banner -------------------------------------------------------------

function drawBanner(kind, ls) {
  const b = $('banner');
  if (kind === 'auth') {
    const use = () => {
      setToken(input.value.trim());
      b.hidden = true;
      views[state.view].refresh(true);
    };
    // Enter in the field does what the button does
    const input = el('input', {
      type: 'password', id: 'token-input', placeholder: 'bearer token', autocomplete: 'off',
      on: { keydown: (e) => { if (e.key === 'Enter') { e.preventDefault(); use(); } } },
    });
    replace(b, el('span', null, 'This agent needs a bearer token (--token-file) for the API: '),
      input,
      el('button', { type: 'button', on: { click: use } }, 'Use token'));
    b.className = 'banner warn';
    b.hidden = false;
    return;
  }
  if (!ls.down) {
    if (b.classList.contains('down')) {
      b.hidden = true;
      b.className = 'banner';
      // Back: redraw what the outage interrupted, and let every other view load
      // again when it is shown (each kept the failed answer of its last query)
      for (const v of Object.values(views)) v.refresh(true);
      if (state.flow && detail) detail.open(state.flow, true);
    }
    return;
  }
  replace(b,
    el('strong', null, 'Cannot reach the podcap agent'),
    el('span', null, ` at ${location.origin} (${ls.reason}). `),
    el('span', { class: 'retry' }, ls.retryInS > 0 ? `Retrying in ${ls.retryInS} s` : 'Retrying…',
      ls.attempt > 0 ? ` (attempt ${ls.attempt + 1}).` : '.'),
    ' ',
    el('button', { type: 'button', on: { click: () => retryNow() } }, 'Retry now'));
  b.className = 'banner down';
  b.hidden = false;
}

// ---- applying a state ---------------------------------------------------------

function apply(next) {
  const prev = state;
  state = next;
  syncControls(next);
  if (prev.view !== next.view || !views[next.view].shown) {
    for (const [name, v] of Object.entries(views)) {
      if (name !== next.view && v.shown) v.hide();
    }
    for (const sec of document.querySelectorAll('main .view')) sec.hidden = sec.id !== 'view-' + next.view;
    clearFilterError();
  }
  views[next.view].show(next);
  if (next.flow) detail.open(next.flow);
  else detail.close();
}

function onKey(ev) {
  const t = ev.target;
  const typing = t instanceof HTMLInputElement || t instanceof HTMLTextAreaElement || t instanceof HTMLSelectElement;
  if (ev.key === '/' && !typing && !ev.ctrlKey && !ev.metaKey && !ev.altKey) {
    ev.preventDefault();
    $('filter').focus();
    $('filter').select();
  } else if (ev.key === 'Escape') {
    if ($('fields-dialog').open) return; // the dialog closes itself
    // an open menu (Columns, Stream to Wireshark) closes first, not the panel under it
    const menu = document.querySelector('details.menu[open], details.wireshark[open]');
    if (menu) {
      ev.preventDefault();
      menu.open = false;
      menu.querySelector('summary')?.focus();
      return;
    }
    if (state.flow) {
      ev.preventDefault();
      setState({ flow: '' });
      views[state.view].focus?.();
    } else if (t === $('filter')) {
      t.blur();
      views[state.view].focus?.();
    }
  }
}

function init() {
  const ctx = { setState, getState, rangeParams, showFilterError, clearFilterError, addHistory };
  views = {
    flows: new FlowsView($('view-flows'), ctx),
    charts: new ChartsView($('view-charts'), ctx),
    health: new HealthView($('view-health'), ctx),
  };
  detail = new Detail($('detail'), ctx);
  $('agent').textContent = location.host;
  $('query').addEventListener('submit', submitQuery);
  $('range').addEventListener('change', () => {
    $('custom-range').hidden = $('range').value !== 'custom';
    if ($('range').value === 'custom') $('from').focus();
    else submitQuery();
  });
  $('live').addEventListener('change', () => setState({ live: $('live').checked ? '1' : '' }, { push: false }));
  $('fields-btn').addEventListener('click', openFields);
  $('fields-close').addEventListener('click', () => $('fields-dialog').close());
  $('filter').addEventListener('input', () => {
    if (!$('filter-error').hidden) $('filter').removeAttribute('aria-invalid');
  });
  document.addEventListener('keydown', onKey);
  window.addEventListener('popstate', () => apply(parseHash()));
  onLinkChange(drawBanner);
  drawHistory();
  apply(parseHash());
  // A page left open on a stale state after an outage shows the banner at once.
  if (linkState().down) drawBanner('down', linkState());
}

init();
