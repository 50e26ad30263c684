// The Capture health view: /api/v1/stats and /api/v1/interfaces, refreshed every two
// seconds while shown.  The headline numbers and the losses per stage come first; then
// every section of the stats as it is, so a counter added to the API shows up here
// without a change to the page.

import { getJSON, isDown } from './api.js';
import { el, replace, fmtBytes, fmtInt, fmtTime, fmtDur } from './util.js';

const REFRESH_MS = 2000;
// (not "timeout": the server's timeouts are idle keep-alive connections it closed)
const LOSS_RE = /drop|lost|error|discard|evict|reject|malformed|bad|refused|cut|warning|giveup|damaged|failed/i;
const BYTES_RE = /bytes$/;
const TIME_RE = /_us$/;

// Where a packet or a record can be lost, stage by stage: [label, path in stats].
const LOSSES = [
  ['Kernel drops (capture)', 'capture.kernel_drops'],
  ['Ring buffer drops', 'capture.ring_drops'],
  ['Bad capture records', 'capture.bad_records'],
  ['Malformed packets', 'decode.malformed'],
  ['Unsupported packets', 'decode.unsupported'],
  ['Flows evicted (table full)', 'flows.evicted'],
  ['Flow rows lost (database)', 'flowdb.lost'],
  ['Packet store write errors', 'pktstore.write_errors'],
  ['Requests rejected (server)', 'server.rejected'],
];

function fmtUptime(s) {
  return s < 60 ? `${s} s` : fmtDur(s * 1e6);
}

// A size, and the cap that retention keeps it under when the agent has one:
// "1.2 GB of 2.0 GB (60 %)".
function ofCap(bytes, cap) {
  if (bytes === undefined || bytes === null) return undefined;
  if (!cap) return fmtBytes(bytes);
  return `${fmtBytes(bytes)} of ${fmtBytes(cap)} (${Math.round((100 * bytes) / cap)} %)`;
}

function at(obj, path) {
  let v = obj;
  for (const k of path.split('.')) {
    if (v === null || typeof v !== 'object') return undefined;
    v = v[k];
  }
  return v;
}

function fmtValue(key, v) {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'number') {
    if (BYTES_RE.test(key)) return `${fmtBytes(v)} (${fmtInt(v)})`;
    if (TIME_RE.test(key) && v > 1e15) return fmtTime(v, false) + ' UTC';
    if (key === 'uptime_s') return fmtUptime(v);
    return fmtInt(v);
  }
  if (typeof v === 'object') return JSON.stringify(v);
  return String(v);
}

// An object as rows of "key: value"; nested objects as "a.b" keys.
function flatten(obj, prefix = '', out = []) {
  for (const [k, v] of Object.entries(obj || {})) {
    const key = prefix ? `${prefix}.${k}` : k;
    if (v && typeof v === 'object' && !Array.isArray(v)) flatten(v, key, out);
    else out.push([key, v]);
  }
  return out;
}

function kvTable(rows) {
  return el('table', { class: 'kv' }, el('tbody', null, rows.map(([k, v]) => {
    const bad = LOSS_RE.test(k) && typeof v === 'number' && v > 0;
    return el('tr', { class: bad ? 'bad' : '' }, el('th', { scope: 'row' }, k), el('td', { class: 'num' }, fmtValue(k, v)));
  })));
}

function arrayTable(items, cls = '') {
  const keys = [];
  for (const it of items) for (const k of Object.keys(it || {})) if (!keys.includes(k)) keys.push(k);
  return el('div', { class: 'table-scroll' }, el('table', { class: 'flows ' + cls },
    el('thead', null, el('tr', null, keys.map((k) => el('th', { scope: 'col' }, k)))),
    el('tbody', null, items.map((it) => el('tr', null, keys.map((k) => {
      const v = it ? it[k] : undefined;
      const bad = LOSS_RE.test(k) && typeof v === 'number' && v > 0;
      return el('td', { class: (typeof v === 'number' ? 'num' : '') + (bad ? ' bad' : '') }, fmtValue(k, v));
    }))))));
}

export class HealthView {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.shown = false;
    this.timer = null;
    this.pending = false;
    this.status = el('div', { class: 'status', id: 'health-status', 'aria-live': 'polite' });
    this.body = el('div', { class: 'health' });
    replace(this.root, el('div', { class: 'toolbar' }, this.status), this.body);
  }

  show() {
    this.shown = true;
    if (!this.timer) {
      this.load();
      this.timer = setInterval(() => this.load(), REFRESH_MS);
    }
  }

  hide() {
    this.shown = false;
    clearInterval(this.timer);
    this.timer = null;
  }

  refresh() {
    if (this.shown) this.load();
  }

  async load() {
    if (this.pending || (isDown() && this.loadedOnce)) return;
    this.pending = true;
    try {
      const [st, ifs] = await Promise.all([getJSON('/api/v1/stats'), getJSON('/api/v1/interfaces')]);
      if (!this.shown) return;
      this.loadedOnce = true;
      this.draw(st, Array.isArray(ifs) ? ifs : []);
      // UTC, as every other time on the page
      replace(this.status, `Updated ${fmtTime(Date.now() * 1000, false).slice(11)} UTC · refreshes every ${REFRESH_MS / 1000} s`);
    } catch (e) {
      replace(this.status, el('span', { class: 'error' }, 'Could not load the stats: ' + e.message));
    } finally {
      this.pending = false;
    }
  }

  draw(st, ifs) {
    const cards = [
      ['Mode', st.mode + (st.backend ? ` (${st.backend})` : '')],
      ['Uptime', st.uptime_s !== undefined ? fmtUptime(st.uptime_s) : '–'],
      ['Packets received', at(st, 'capture.received')],
      ['Active flows', at(st, 'flows.active')],
      ['Flow records', at(st, 'flowdb.rows_written') ?? at(st, 'flowdb.max_id')],
      ['Flow database', ofCap(at(st, 'flowdb.bytes'), at(st, 'flowdb.cap_bytes'))],
      ['Packet store', ofCap(at(st, 'pktstore.disk_bytes'), at(st, 'pktstore.cap_bytes'))],
      ['Oldest flow', at(st, 'flowdb.oldest_us') ? fmtTime(at(st, 'flowdb.oldest_us'), false) + ' UTC' : undefined],
    ].filter(([, v]) => v !== undefined && v !== null);
    const losses = LOSSES.map(([label, path]) => [label, at(st, path)]).filter(([, v]) => v !== undefined);
    const lossTotal = losses.reduce((a, [, v]) => a + (Number(v) || 0), 0);

    // Interfaces: the observation points, with the live counters where the agent captures.
    const live = new Map((Array.isArray(st.interfaces) ? st.interfaces : []).map((i) => [i.obs_id ?? i.iface, i]));
    // (/api/v1/interfaces nests an interface's live counters under "live": flat
    // columns here, not a cell of JSON text)
    const merged = ifs.map(({ live: nested, ...i }) =>
      ({ ...i, ...(nested && typeof nested === 'object' ? nested : {}), ...(live.get(i.obs_id) || live.get(i.iface) || {}) }));
    for (const i of live.values()) if (!merged.some((m) => m.iface === i.iface)) merged.push(i);

    const sections = [];
    for (const [k, v] of Object.entries(st)) {
      if (k === 'interfaces' || v === null || typeof v !== 'object') continue;
      sections.push(el('section', { class: 'panel' }, el('h2', null, k),
        Array.isArray(v) ? (v.length ? arrayTable(v) : el('p', { class: 'hint' }, 'none')) : kvTable(flatten(v))));
    }
    replace(this.body,
      el('div', { class: 'cards' }, cards.map(([k, v]) => el('div', { class: 'card' },
        el('div', { class: 'card-label' }, k), el('div', { class: 'card-value' }, typeof v === 'number' ? fmtInt(v) : String(v))))),
      el('section', { class: 'panel' + (lossTotal > 0 ? ' has-loss' : '') },
        el('h2', null, 'Losses per stage'),
        losses.length ? kvTable(losses) : el('p', { class: 'hint' }, st.mode === 'serve'
          ? 'podcap serve reads a database: no capture here, so no capture losses.' : 'No loss counters reported.')),
      el('section', { class: 'panel', id: 'interfaces' }, el('h2', null, `Interfaces (${merged.length})`),
        merged.length ? arrayTable(merged, 'ifaces') : el('p', { class: 'hint' }, 'No observation points yet.')),
      el('div', { class: 'health-grid' }, sections));
  }
}
