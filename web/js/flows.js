// The Flows view: one page of /api/v1/flows at a time (keyset pagination: the API's
// next_cursor, so page 10,000 costs what page 1 does), sortable by the orders the API
// has, choosable columns, CSV download, keyboard navigation, and live mode (polls
// order=id&cursor=id:0:LASTID every second and puts new flows on top).

import { getJSON, download, isDown, ApiError } from './api.js';
import {
  el, replace, fmtTime, fmtDur, fmtBytes, fmtInt, addrPort, protoName,
  flowBytes, flowPackets, flowRetrans, idGreater,
} from './util.js';

const LIVE_MS = 1000;
const LIVE_LIMIT = 1000;
const PAGE_SIZES = ['50', '100', '250', '500', '1000'];

const nz = (v) => (v === null || v === undefined ? '' : String(v));

// A time without its date when every row of the page is of the same day (the date is
// then in the column's header): saves a tenth of a 1280-pixel screen.
const clock = (us, day) => {
  const t = fmtTime(us);
  return day && t.startsWith(day) ? t.slice(day.length + 1) : t;
};

function commonDay(rows) {
  if (rows.length === 0) return null;
  const days = new Set();
  for (const f of rows) {
    days.add(fmtTime(f.first_us).slice(0, 10));
    days.add(fmtTime(f.last_us).slice(0, 10));
    if (days.size > 1) return null;
  }
  return [...days][0];
}

// Every column the table can show.  orders: the API orders a click on the header
// cycles through (only those the API can page by key; the others are not sortable,
// since sorting one page in the browser would lie about the rest).
export const COLUMNS = [
  { key: 'id', label: 'ID', num: true, orders: ['-id', 'id'], get: (f) => f.id },
  { key: 'time', label: 'First packet', orders: ['-first', 'first'], get: (f, day) => clock(f.first_us, day), cls: 'time', utc: true },
  { key: 'last', label: 'Last packet', orders: ['-last', 'last'], get: (f, day) => clock(f.last_us, day), cls: 'time', utc: true },
  { key: 'duration', label: 'Duration', num: true, get: (f) => fmtDur(f.last_us - f.first_us) },
  { key: 'obs', label: 'Seen on', get: (f) => nz(f.iface), cls: 'iface', title: (f) => (f.pod ? `observation point of pod ${f.pod}` : 'observation point') },
  { key: 'obs_pod', label: 'Seen on pod', get: (f) => nz(f.pod), cls: 'pod' },
  { key: 'src_pod', label: 'Client pod', get: (f) => nz(f.src_pod), cls: 'pod', title: (f) => [f.src_workload, f.src_node].filter(Boolean).join(' on ') },
  { key: 'client', label: 'Client', get: (f) => addrPort(f.src, f.sport), cls: 'mono addr' },
  { key: 'arrow', label: '', get: () => '→', cls: 'arrow', fixed: true },
  { key: 'server', label: 'Server', get: (f) => addrPort(f.dst, f.dport), cls: 'mono addr' },
  { key: 'dst_pod', label: 'Server pod', get: (f) => nz(f.dst_pod), cls: 'pod', title: (f) => [f.dst_workload, f.dst_node].filter(Boolean).join(' on ') },
  { key: 'service', label: 'Service', get: (f) => nz(f.service), cls: 'pod', title: (f) => (f.service_via ? 'via ' + f.service_via : '') },
  { key: 'l4', label: 'L4', get: (f) => protoName(f.ip_proto) },
  { key: 'app', label: 'App', get: (f) => nz(f.proto_name) },
  { key: 'category', label: 'Category', get: (f) => nz(f.category) },
  { key: 'confidence', label: 'Confidence', get: (f) => nz(f.confidence) },
  { key: 'host', label: 'Host', get: (f) => nz(f.host), cls: 'long' },
  { key: 'url', label: 'URL', get: (f) => nz(f.url), cls: 'long' },
  { key: 'http_status', label: 'HTTP', num: true, get: (f) => nz(f.http_status) },
  { key: 'packets', label: 'Packets', num: true, orders: ['-packets'], get: (f) => fmtInt(flowPackets(f)) },
  { key: 'bytes', label: 'Bytes', num: true, orders: ['-bytes'], get: (f) => fmtBytes(flowBytes(f)), title: (f) => fmtInt(flowBytes(f)) + ' bytes' },
  { key: 'rtt', label: 'RTT', num: true, get: (f) => (f.rtt_us === null || f.rtt_us === undefined ? '' : fmtDur(f.rtt_us)) },
  { key: 'retrans', label: 'Retrans', num: true, get: (f) => (f.ip_proto === 6 ? String(flowRetrans(f)) : '') },
  { key: 'tunnel', label: 'Tunnel', get: (f) => (f.tunnel && f.tunnel !== 'none' ? f.tunnel + (f.vni !== null && f.vni !== undefined ? '/' + f.vni : '') : '') },
  { key: 'risk', label: 'Risk', get: (f) => nz(f.risk_names), cls: 'long' },
  { key: 'end', label: 'End', get: (f) => nz(f.end_reason) },
  { key: 'packets_state', label: 'Stored', get: (f) => nz(f.packets_state) },
  { key: 'community_id', label: 'Community ID', get: (f) => nz(f.community_id), cls: 'mono long' },
];
const BY_KEY = new Map(COLUMNS.map((c) => [c.key, c]));
export const DEFAULT_COLS = ['time', 'obs', 'src_pod', 'client', 'arrow', 'server', 'dst_pod', 'service',
  'app', 'host', 'packets', 'bytes', 'rtt', 'retrans', 'tunnel'];

const ORDER_WORDS = {
  '-id': 'newest first', id: 'oldest first', '-last': 'latest packet first', last: 'earliest last packet first',
  '-first': 'latest start first', first: 'earliest start first', '-bytes': 'most bytes first',
  '-packets': 'most packets first',
};

export class FlowsView {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.shown = false;
    this.key = null;
    this.rows = [];
    this.cursors = [null]; // cursor of each page seen so far; [i] gives page i
    this.page = 0;
    this.next = null;
    this.abort = null;
    this.liveTimer = null;
    this.livePending = false;
    this.lastId = null;
    this.newSince = 0;
    this.focusIdx = 0;
    this.build();
  }

  build() {
    this.status = el('div', { class: 'status', id: 'flows-status', 'aria-live': 'polite' });
    this.prevBtn = el('button', { type: 'button', id: 'prev-page', title: 'Previous page (p, PageUp)', on: { click: () => this.prevPage() } }, '← Prev');
    this.nextBtn = el('button', { type: 'button', id: 'next-page', title: 'Next page (n, PageDown)', on: { click: () => this.nextPage() } }, 'Next →');
    this.sizeSel = el('select', {
      id: 'page-size', title: 'Rows per page',
      on: { change: () => this.ctx.setState({ limit: this.sizeSel.value }, { push: false }) },
    }, PAGE_SIZES.map((n) => el('option', { value: n }, n + ' rows')));
    this.orderSel = el('select', {
      id: 'order', title: 'Order (also: click a column header)',
      on: { change: () => this.ctx.setState({ order: this.orderSel.value }) },
    }, Object.entries(ORDER_WORDS).map(([o, t]) => el('option', { value: o }, t)));
    this.colsBox = el('div', { class: 'menu-body' });
    this.colsMenu = el('details', { class: 'menu', id: 'columns-menu' }, el('summary', null, 'Columns'), this.colsBox);
    this.csvBtn = el('button', {
      type: 'button', id: 'csv', title: 'The flows of this filter and range, in this order, as CSV (at most 10,000 rows; podcap flows --server URL --csv pages through more)',
      on: { click: () => this.csv() },
    }, 'CSV');
    this.liveBadge = el('button', { type: 'button', class: 'live-badge', hidden: true, on: { click: () => this.refresh(true) } });
    this.thead = el('thead');
    this.tbody = el('tbody', { on: { keydown: (e) => this.onKey(e), click: (e) => this.onClick(e) } });
    this.table = el('table', { class: 'flows', id: 'flows-table', 'aria-label': 'Flows' }, this.thead, this.tbody);
    this.message = el('div', { class: 'message', hidden: true });
    replace(this.root,
      el('div', { class: 'toolbar' },
        this.status,
        el('span', { class: 'spacer' }),
        this.liveBadge, this.orderSel, this.colsMenu, this.sizeSel, this.csvBtn, this.prevBtn, this.nextBtn),
      el('div', { class: 'table-scroll', id: 'flows-scroll' }, this.table),
      this.message);
  }

  cols(s) {
    const keys = (s.cols ? s.cols.split(',') : DEFAULT_COLS).filter((k) => BY_KEY.has(k));
    return (keys.length ? keys : DEFAULT_COLS).map((k) => BY_KEY.get(k));
  }

  show(s) {
    this.shown = true;
    this.s = s;
    this.sizeSel.value = PAGE_SIZES.includes(s.limit) ? s.limit : '100';
    this.orderSel.value = ORDER_WORDS[s.order] ? s.order : '-id';
    const r = this.ctx.rangeParams(s);
    const key = JSON.stringify([s.filter, r.from, r.to, s.order, this.sizeSel.value]);
    const look = JSON.stringify([s.cols, s.order]);
    if (look !== this.look) {
      this.look = look;
      this.drawColumnsMenu(s);
      this.drawHead(s);
    }
    if (key !== this.key) {
      this.key = key;
      this.cursors = [null];
      this.page = 0;
      this.load();
    } else if (this.drawnCols !== s.cols) {
      this.drawRows();
    } else {
      this.markOpen();
    }
    this.setLive(s.live === '1');
  }

  hide() {
    this.shown = false;
    this.setLive(false);
    if (this.abort) this.abort.abort();
  }

  refresh() {
    this.key = null;
    this.look = null;
    if (this.shown) this.show(this.ctx.getState());
  }

  focus() {
    const tr = this.tbody.rows[this.focusIdx] || this.tbody.rows[0];
    if (tr) tr.focus();
  }

  params(extra) {
    const s = this.s;
    const r = this.ctx.rangeParams(s);
    return { filter: s.filter, from: r.from, to: r.to, order: s.order, limit: this.sizeSel.value, ...extra };
  }

  async load() {
    if (this.abort) this.abort.abort();
    const ac = new AbortController();
    this.abort = ac;
    const s = this.s;
    const t0 = performance.now();
    this.root.classList.add('loading');
    this.setStatus('Loading…');
    let j;
    try {
      j = await getJSON('/api/v1/flows', this.params({ cursor: this.cursors[this.page] }), { signal: ac.signal });
    } catch (e) {
      if (ac.signal.aborted) return;
      this.root.classList.remove('loading');
      this.failed(e, s);
      return;
    }
    if (ac.signal.aborted) return;
    const t1 = performance.now();
    this.root.classList.remove('loading');
    this.ctx.clearFilterError();
    if (s.filter) this.ctx.addHistory(s.filter);
    this.rows = Array.isArray(j.flows) ? j.flows : [];
    this.next = j.next_cursor || null;
    this.complete = j.complete !== false;
    this.incomplete = Array.isArray(j.incomplete_because) ? j.incomplete_because : [];
    this.answerMs = t1 - t0;
    this.newSince = 0;
    this.liveBadge.hidden = true;
    if (this.page === 0 && s.order === '-id' && this.rows.length > 0) this.lastId = this.rows[0].id;
    else if (this.page === 0) this.lastId = null; // found on the first live poll
    this.focusIdx = 0;
    const tb = performance.now();
    this.drawRows();
    const built = performance.now() - tb;
    // "Answered and drawn": after the browser has laid out and painted the rows.
    requestAnimationFrame(() => setTimeout(() => {
      const drawn = performance.now();
      performance.mark('podcap-flows-drawn', {
        detail: { filter: s.filter, rows: this.rows.length, answerMs: t1 - t0, buildMs: built, drawnMs: drawn - t0 },
      });
    }, 0));
  }

  failed(e, s) {
    this.rows = [];
    this.next = null;
    this.message.hidden = true; // "no flows match" belonged to the last answer
    replace(this.tbody);
    if (e instanceof ApiError && e.status === 400 && /^(from|to)\b/.test(e.message)) {
      // the range, not the filter (the API names the parameter): the filter stays as it is
      this.setStatus('The time range was refused: ' + e.message, true);
    } else if (e instanceof ApiError && e.status === 400 && e.position !== null) {
      this.ctx.showFilterError(e, s.filter);
      this.setStatus('The filter or range was refused; nothing shown.');
    } else if (e instanceof ApiError && e.network) {
      this.setStatus('The agent did not answer; the page retries (see the banner).');
    } else {
      this.setStatus('Error: ' + e.message, true);
    }
    this.updatePager();
  }

  setStatus(text, isError = false) {
    this.status.classList.toggle('error', isError);
    replace(this.status, text);
  }

  drawStatus() {
    const s = this.s;
    const parts = [];
    const n = this.rows.length;
    parts.push(n === 0 ? (this.page === 0 ? 'No flows match' : 'No more flows')
      : `${fmtInt(n)} flow${n === 1 ? '' : 's'}`);
    parts.push(`page ${this.page + 1}`);
    parts.push(ORDER_WORDS[s.order] || s.order);
    if (this.answerMs !== undefined) parts.push(`answered in ${Math.round(this.answerMs)} ms`);
    const nodes = [parts.join(' · ')];
    if (!this.complete) {
      nodes.push(' ', el('span', {
        class: 'warn-chip',
        title: 'The agent lost packets or records, or retention deleted flows, in this range',
      }, 'incomplete: ' + (this.incomplete.join(', ') || 'see Capture health')));
    }
    replace(this.status, ...nodes);
    this.status.classList.remove('error');
  }

  drawColumnsMenu(s) {
    const shown = new Set(this.cols(s).map((c) => c.key));
    replace(this.colsBox, COLUMNS.filter((c) => !c.fixed).map((c) => el('label', null,
      el('input', {
        type: 'checkbox', value: c.key, checked: shown.has(c.key),
        on: { change: () => this.toggleColumn(c.key) },
      }), ' ', c.label)),
    el('button', { type: 'button', class: 'link', on: { click: () => this.ctx.setState({ cols: '' }, { push: false }) } }, 'Default columns'));
  }

  toggleColumn(key) {
    const cur = this.cols(this.s).map((c) => c.key);
    let next;
    if (cur.includes(key)) next = cur.filter((k) => k !== key);
    else next = COLUMNS.map((c) => c.key).filter((k) => cur.includes(k) || k === key);
    // The arrow goes with the client and server columns.
    next = next.filter((k) => k !== 'arrow');
    const ci = next.indexOf('client');
    if (ci >= 0 && next[ci + 1] === 'server') next.splice(ci + 1, 0, 'arrow');
    const str = next.join(',');
    this.ctx.setState({ cols: str === DEFAULT_COLS.join(',') ? '' : str }, { push: false });
  }

  drawHead(s) {
    const order = s.order;
    replace(this.thead, el('tr', null, this.cols(s).map((c) => {
      // Times are UTC; the day, when the whole page has one, goes under the name.
      const label = c.utc ? [c.label, el('span', { class: 'sub' }, this.day ? `UTC ${this.day}` : 'UTC')] : [c.label];
      if (!c.orders) return el('th', { class: c.num ? 'num' : '', scope: 'col' }, label);
      const active = c.orders.includes(order);
      const arrow = active ? (order.startsWith('-') ? ' ▼' : ' ▲') : '';
      return el('th', {
        class: (c.num ? 'num ' : '') + 'sortable', scope: 'col',
        'aria-sort': active ? (order.startsWith('-') ? 'descending' : 'ascending') : 'none',
      }, el('button', {
        type: 'button', class: 'th-sort', dataset: { col: c.key },
        title: 'Sort: ' + c.orders.map((o) => ORDER_WORDS[o]).join(' / '),
        on: { click: () => this.sortBy(c) },
      }, label[0] + arrow, label.slice(1)));
    })));
  }

  sortBy(c) {
    const cur = this.s.order;
    const i = c.orders.indexOf(cur);
    const next = i < 0 ? c.orders[0] : c.orders[(i + 1) % c.orders.length];
    if (next !== cur) this.ctx.setState({ order: next });
  }

  rowFor(f, cols) {
    const tr = el('tr', { tabindex: '-1', dataset: { id: f.id } });
    for (const c of cols) {
      const td = document.createElement('td');
      td.textContent = c.get(f, this.day);
      if (c.label) td.dataset.label = c.label; // the row's card form on phones
      const cls = (c.num ? 'num ' : '') + (c.cls || '');
      if (cls.trim()) td.className = cls.trim();
      let title = c.title ? c.title(f) : '';
      if (c.cls && /long|pod|addr|iface/.test(c.cls) && td.textContent) title = title ? `${td.textContent} (${title})` : td.textContent;
      if (title) td.title = title;
      tr.appendChild(td);
    }
    return tr;
  }

  drawRows() {
    const cols = this.cols(this.s);
    this.drawnCols = this.s.cols;
    const day = commonDay(this.rows);
    if (day !== this.day) {
      this.day = day;
      this.drawHead(this.s);
    }
    const frag = document.createDocumentFragment();
    for (const f of this.rows) frag.appendChild(this.rowFor(f, cols));
    replace(this.tbody, frag);
    this.markOpen();
    const first = this.tbody.rows[Math.min(this.focusIdx, this.tbody.rows.length - 1)];
    if (first) first.tabIndex = 0;
    this.message.hidden = this.rows.length > 0;
    if (this.rows.length === 0) {
      replace(this.message, this.page === 0
        ? (this.s.filter ? 'No flows match this filter in this time range.' : 'No flows in this time range yet.')
        : 'No more flows.');
    }
    this.drawStatus();
    this.updatePager();
  }

  markOpen() {
    const open = this.ctx.getState().flow;
    for (const tr of this.tbody.rows) {
      if (open && tr.dataset.id === open) tr.setAttribute('aria-selected', 'true');
      else tr.removeAttribute('aria-selected');
    }
  }

  updatePager() {
    this.prevBtn.disabled = this.page === 0;
    this.nextBtn.disabled = !this.next;
  }

  nextPage() {
    if (!this.next) return;
    this.cursors[this.page + 1] = this.next;
    this.page++;
    // a second click (or 'n') before this page arrives must not reuse its cursor
    this.next = null;
    this.updatePager();
    this.load();
  }

  prevPage() {
    if (this.page === 0) return;
    this.page--;
    this.load();
  }

  async csv() {
    try {
      await download('/api/v1/flows', this.params({ format: 'csv', limit: 10000, cursor: null }), 'podcap-flows.csv');
    } catch (e) {
      this.setStatus('CSV: ' + e.message, true);
    }
  }

  // ---- keyboard and mouse ----

  moveFocus(i) {
    const rows = this.tbody.rows;
    if (rows.length === 0) return;
    i = Math.max(0, Math.min(rows.length - 1, i));
    const cur = rows[this.focusIdx];
    if (cur) cur.tabIndex = -1;
    this.focusIdx = i;
    rows[i].tabIndex = 0;
    rows[i].focus();
    rows[i].scrollIntoView({ block: 'nearest' });
  }

  onKey(e) {
    const tr = e.target.closest('tr');
    if (!tr) return;
    const idx = tr.sectionRowIndex;
    let handled = true;
    switch (e.key) {
      case 'ArrowDown': case 'j': this.moveFocus(idx + 1); break;
      case 'ArrowUp': case 'k': this.moveFocus(idx - 1); break;
      case 'Home': this.moveFocus(0); break;
      case 'End': this.moveFocus(this.tbody.rows.length - 1); break;
      case 'Enter': case 'o': this.open(tr.dataset.id); break;
      case 'PageDown': case 'n': this.nextPage(); break;
      case 'PageUp': case 'p': this.prevPage(); break;
      default: handled = false;
    }
    if (handled) e.preventDefault();
  }

  onClick(e) {
    const tr = e.target.closest('tr');
    if (!tr || !tr.dataset.id) return;
    this.focusIdx = tr.sectionRowIndex;
    this.open(tr.dataset.id);
  }

  open(id) {
    this.ctx.setState({ flow: id });
    this.markOpen();
  }

  // ---- live mode ----

  setLive(on) {
    if (on && !this.liveTimer) {
      this.liveTimer = setInterval(() => this.poll(), LIVE_MS);
      this.root.classList.add('live-on');
    } else if (!on && this.liveTimer) {
      clearInterval(this.liveTimer);
      this.liveTimer = null;
      this.root.classList.remove('live-on');
      this.liveBadge.hidden = true;
    }
  }

  async poll() {
    if (this.livePending || isDown() || !this.shown || this.root.classList.contains('loading')) return;
    // a query the API refused (400) is not asked again every second: the next
    // change of filter or range makes a new key
    if (this.refusedKey === this.key) return;
    this.livePending = true;
    const key = this.key;
    try {
      if (this.lastId === null) {
        // No newest row to start from: start from the newest flow the agent has.
        const st = await getJSON('/api/v1/stats');
        const maxId = st && st.flowdb && st.flowdb.max_id;
        if (key === this.key && this.lastId === null) this.lastId = String(maxId ?? 0);
        return;
      }
      const r = this.ctx.rangeParams(this.s);
      const j = await getJSON('/api/v1/flows', {
        filter: this.s.filter, from: r.from, to: r.to, order: 'id',
        cursor: `id:0:${this.lastId}`, limit: LIVE_LIMIT,
      });
      if (key !== this.key || !this.shown) return; // the query changed meanwhile
      const fresh = (Array.isArray(j.flows) ? j.flows : []).filter((f) => idGreater(f.id, this.lastId));
      if (fresh.length === 0) return;
      this.lastId = fresh[fresh.length - 1].id;
      if (this.s.order === '-id' && this.page === 0) this.prepend(fresh);
      else {
        this.newSince += fresh.length;
        this.liveBadge.textContent = `${fmtInt(this.newSince)} new flow${this.newSince === 1 ? '' : 's'}: show`;
        this.liveBadge.hidden = false;
      }
    } catch (e) {
      // An outage shows in the banner; a refused filter already shows at the box.
      if (e instanceof ApiError && e.status === 400) this.refusedKey = key;
    } finally {
      this.livePending = false;
    }
  }

  prepend(fresh) {
    if (this.day && commonDay(fresh) !== this.day) {
      // A new day: every row shows its date again.
      this.rows = fresh.slice().reverse().concat(this.rows).slice(0, Number(this.sizeSel.value));
      this.drawRows();
      return;
    }
    const cols = this.cols(this.s);
    const limit = Number(this.sizeSel.value);
    const newest = fresh.slice().reverse();
    const frag = document.createDocumentFragment();
    for (const f of newest) {
      const tr = this.rowFor(f, cols);
      tr.classList.add('new');
      frag.appendChild(tr);
    }
    this.tbody.insertBefore(frag, this.tbody.firstChild);
    this.rows = newest.concat(this.rows);
    // The page keeps its size: the oldest rows move to the next page.
    while (this.rows.length > limit) {
      this.rows.pop();
      this.tbody.deleteRow(this.tbody.rows.length - 1);
    }
    if (this.rows.length > 0) {
      this.next = `-id:${this.rows[this.rows.length - 1].id}:${this.rows[this.rows.length - 1].id}`;
      if (this.rows.length < limit) this.next = null;
    }
    this.focusIdx = Math.min(this.focusIdx + newest.length, this.tbody.rows.length - 1);
    for (const tr of this.tbody.rows) tr.tabIndex = -1;
    const cur = this.tbody.rows[this.focusIdx];
    if (cur) cur.tabIndex = 0;
    this.message.hidden = true;
    this.markOpen();
    this.drawStatus();
    this.updatePager();
  }
}
