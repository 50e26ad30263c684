// The Charts view: bytes / flows / packets over time by application and by pod
// (stacked bars from /api/v1/top with bucket), the top clients and servers, and who
// talks to whom (a pod-or-address matrix).  Clicking a bar, a legend entry, a talker
// or a matrix cell adds that key to the filter.  Drawn as SVG and HTML by hand: no
// chart library to install, embed or keep up to date.

import { getJSON, ApiError } from './api.js';
import {
  el, svg, replace, fmtBytes, fmtCount, fmtInt, fmtTime, fmtAxisTime, parseTimeUs, quoteValue,
  andFilter, flowBytes, debounce,
} from './util.js';

const PALETTE = ['#2563eb', '#f59e0b', '#10b981', '#ef4444', '#8b5cf6', '#06b6d4', '#ec4899', '#84cc16',
  '#f97316', '#64748b'];
const NICE_BUCKETS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200,
  86400, 172800, 604800];
const TARGET_BUCKETS = 60;
const MATRIX_FLOWS = 2000;
const MATRIX_SIDE = 12;
const TOP_KEYS = 8;

const METRICS = { bytes: 'Bytes', flows: 'Flows', packets: 'Packets' };

function fmtMetric(metric, v) {
  return metric === 'bytes' ? fmtBytes(v) : fmtCount(v);
}

// Bucket width: about TARGET_BUCKETS bars over the range, a whole minute when the range
// is longer than two hours (the rollup's resolution: the API then answers from the
// per-minute table instead of scanning flows).
function pickBucket(spanUs) {
  const raw = spanUs / 1e6 / TARGET_BUCKETS;
  let b = NICE_BUCKETS_S.find((x) => x >= raw) || Math.ceil(raw / 86400) * 86400;
  if (spanUs > 2 * 3600e6 && b < 60) b = 60;
  while (spanUs / 1e6 / b > 900) b *= 2;
  return b;
}

function bucketText(s) {
  if (s % 86400 === 0) return s / 86400 + 'd';
  if (s % 3600 === 0) return s / 3600 + 'h';
  if (s % 60 === 0) return s / 60 + 'm';
  return s + 's';
}

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

// Filter tests for a chart key (an empty key is "no value": a flow without app/pod).
const KEY_TESTS = {
  app: (k) => (k ? `app == ${quoteValue(k)}` : 'not app exists'),
  pod: (k) => (k ? `obs.pod == ${quoteValue(k)}` : 'not obs.pod exists'),
};
// Top clients and servers by address, or by the Kubernetes names of the ends (the
// API's by=src_pod, ...; flows without a name are left out of the bars).
const TALKERS = {
  ip: { label: 'Address', src: 'src', dst: 'dst', note: 'addresses' },
  pod: { label: 'Pod', src: 'src_pod', dst: 'dst_pod', note: 'pods' },
  workload: { label: 'Workload', src: 'src_workload', dst: 'dst_workload', note: 'workloads' },
  ns: { label: 'Namespace', src: 'src_ns', dst: 'dst_ns', note: 'namespaces' },
};
const talkerTest = (by, k) => `${by} == ${quoteValue(k)}`;

export class ChartsView {
  constructor(root, ctx) {
    this.root = root;
    this.ctx = ctx;
    this.shown = false;
    this.key = null;
    this.abort = null;
    this.data = {};
    this.build();
    window.addEventListener('resize', debounce(() => { if (this.shown) this.drawAll(); }, 150));
  }

  build() {
    this.metricSel = el('select', {
      id: 'metric', title: 'What the charts count',
      on: { change: () => this.ctx.setState({ metric: this.metricSel.value }, { push: false }) },
    }, Object.entries(METRICS).map(([v, t]) => el('option', { value: v }, t)));
    this.talkersSel = el('select', {
      id: 'talkers', title: 'What the top clients and servers are',
      on: { change: () => this.ctx.setState({ talkers: this.talkersSel.value }, { push: false }) },
    }, Object.entries(TALKERS).map(([v, t]) => el('option', { value: v }, t.label)));
    this.status = el('div', { class: 'status', id: 'charts-status', 'aria-live': 'polite' });
    this.panels = {
      app: this.panel('chart-app', 'By application over time'),
      pod: this.panel('chart-pod', 'By pod over time (the pod of the observation point)'),
      src: this.panel('top-src', 'Top clients'),
      dst: this.panel('top-dst', 'Top servers'),
      matrix: this.panel('matrix', 'Who talks to whom'),
    };
    replace(this.root,
      el('div', { class: 'toolbar' }, this.status, el('span', { class: 'spacer' }),
        el('label', null, 'Talkers by ', this.talkersSel), el('label', null, 'Count ', this.metricSel)),
      el('div', { class: 'charts-grid' },
        this.panels.app.node, this.panels.pod.node,
        el('div', { class: 'talkers' }, this.panels.src.node, this.panels.dst.node),
        this.panels.matrix.node));
  }

  panel(id, title) {
    const body = el('div', { class: 'panel-body' });
    const note = el('div', { class: 'panel-note' });
    const h = el('h2', null, title);
    return { node: el('section', { class: 'panel', id }, h, note, body), body, note, h };
  }

  show(s) {
    this.shown = true;
    this.s = s;
    this.metricSel.value = METRICS[s.metric] ? s.metric : 'bytes';
    this.talkersSel.value = TALKERS[s.talkers] ? s.talkers : 'ip';
    const r = this.ctx.rangeParams(s);
    const key = JSON.stringify([s.filter, r.from, r.to, this.metricSel.value, this.talkersSel.value]);
    if (key !== this.key) {
      this.key = key;
      this.load();
    }
  }

  hide() {
    this.shown = false;
    if (this.abort) this.abort.abort();
  }

  refresh() {
    this.key = null;
    if (this.shown) this.show(this.ctx.getState());
  }

  pick(test) {
    this.ctx.setState({ filter: andFilter(this.s.filter, test) });
  }

  async load() {
    if (this.abort) this.abort.abort();
    const ac = new AbortController();
    this.abort = ac;
    const signal = ac.signal;
    const s = this.s;
    const metric = this.metricSel.value;
    const talkers = TALKERS[this.talkersSel.value];
    const t0 = performance.now();
    for (const p of Object.values(this.panels)) {
      p.node.classList.add('loading');
      replace(p.note, 'Loading…');
    }
    replace(this.status, 'Loading…');
    // The chart needs numbers for its time axis: the range's ends, or for "all time"
    // the oldest and newest flow the database holds (from /api/v1/stats).
    let range;
    try {
      range = await this.resolveRange(s, signal);
    } catch (e) {
      if (signal.aborted) return;
      this.failAll(e, s);
      return;
    }
    if (signal.aborted) return;
    if (!range) {
      for (const p of Object.values(this.panels)) {
        p.node.classList.remove('loading');
        replace(p.note);
        replace(p.body, el('p', { class: 'hint' }, 'No flows in the database yet.'));
      }
      replace(this.status, 'No flows yet.');
      return;
    }
    const bucketS = pickBucket(range.to - range.from);
    const fromS = (Math.floor(range.from / 1e6 / bucketS) * bucketS).toString();
    const toS = (range.to / 1e6).toFixed(6);
    const base = { filter: s.filter, from: fromS, to: toS, metric };
    replace(this.status, `${fmtTime(range.from, false)} – ${fmtTime(range.to, false)} UTC · bars of ${bucketText(bucketS)}`);
    this.data = { metric, talkers, bucketUs: bucketS * 1e6, fromUs: Number(fromS) * 1e6, toUs: range.to };
    let filterErrorShown = false;
    // One request can answer several panels: /api/v1/top with by=app,pod,... sums
    // every key in one scan of the flows (four scans of ten million flows each
    // took as long as the API's 10-s limit).
    const job = async (names, path, params, draws) => {
      try {
        const j = await getJSON(path, params, { signal });
        if (signal.aborted) return;
        names.forEach((name, i) => {
          const one = names.length === 1 ? j : { ...(j.tops || [])[i], complete: j.complete };
          const p = this.panels[name];
          this.data[name] = one;
          p.node.classList.remove('loading');
          draws[i].call(this, p, one);
        });
      } catch (e) {
        if (signal.aborted) return;
        for (const name of names) {
          const p = this.panels[name];
          p.node.classList.remove('loading');
          this.data[name] = null;
          replace(p.note);
          if (e instanceof ApiError && e.status === 400 && e.position !== null) {
            if (!filterErrorShown) this.ctx.showFilterError(e, s.filter);
            filterErrorShown = true;
            replace(p.body, el('p', { class: 'hint' }, 'The filter was refused (see above).'));
          } else {
            replace(p.body, el('p', { class: 'error' }, e.message));
          }
        }
      }
    };
    const b = bucketText(bucketS);
    const matrix = job(['matrix'], '/api/v1/flows',
      { filter: s.filter, from: fromS, to: toS, order: '-bytes', limit: MATRIX_FLOWS }, [this.drawMatrix]);
    if (s.filter) {
      // a filter: no rollup, so all four keys in one scan
      await Promise.all([
        job(['app', 'pod', 'src', 'dst'], '/api/v1/top',
          { ...base, by: `app,pod,${talkers.src},${talkers.dst}`, bucket: `${b},${b},,`, limit: `${TOP_KEYS},${TOP_KEYS},11,11` },
          [this.drawTime, this.drawTime, this.drawTop, this.drawTop]),
        matrix,
      ]);
    } else {
      // apps and pods from the per-minute rollup at once; clients and servers in one scan
      await Promise.all([
        job(['app', 'pod'], '/api/v1/top', { ...base, by: 'app,pod', bucket: b, limit: TOP_KEYS },
          [this.drawTime, this.drawTime]),
        job(['src', 'dst'], '/api/v1/top', { ...base, by: `${talkers.src},${talkers.dst}`, limit: 11 },
          [this.drawTop, this.drawTop]),
        matrix,
      ]);
    }
    if (signal.aborted) return;
    if (!filterErrorShown) {
      this.ctx.clearFilterError();
      if (s.filter) this.ctx.addHistory(s.filter);
    }
    performance.mark('podcap-charts-drawn', { detail: { ms: performance.now() - t0 } });
  }

  failAll(e, s) {
    for (const p of Object.values(this.panels)) {
      p.node.classList.remove('loading');
      replace(p.note);
      replace(p.body);
    }
    if (e instanceof ApiError && e.status === 400) this.ctx.showFilterError(e, s.filter);
    replace(this.status, e instanceof ApiError && e.network ? 'The agent did not answer; the page retries.' : 'Error: ' + e.message);
  }

  async resolveRange(s, signal) {
    const r = this.ctx.rangeParams(s);
    const st = await getJSON('/api/v1/stats', null, { signal });
    const now = Number.isFinite(st.now_us) ? st.now_us : Date.now() * 1000;
    const fdb = st.flowdb || {};
    // an empty database says 0 for both (not null): no flows, not 1970
    const oldest = Number.isFinite(fdb.oldest_us) && fdb.oldest_us > 0 ? fdb.oldest_us : null;
    const newest = Number.isFinite(fdb.newest_us) && fdb.newest_us > 0 ? fdb.newest_us : null;
    // a range the user typed and that is not a time is said, not replaced by
    // everything (as the Flows view gets it from the API)
    let from = oldest, to = r.from ? now : newest;
    if (r.from && (from = parseTimeUs(r.from, now)) === null) throw new Error(`the range's start '${r.from}' is not a time`);
    if (r.to && (to = parseTimeUs(r.to, now)) === null) throw new Error(`the range's end '${r.to}' is not a time`);
    if (r.from && r.to && from > to) throw new Error('the range starts after it ends');
    if (from === null || to === null) return null;
    if (oldest !== null && from < oldest && !r.from) from = oldest;
    if (to <= from) to = from + 1e6;
    return { from, to };
  }

  drawAll() {
    for (const name of ['app', 'pod']) if (this.data[name]) this.drawTime(this.panels[name], this.data[name]);
    if (this.data.matrix) this.drawMatrix(this.panels.matrix, this.data.matrix);
  }

  // ---- stacked bars over time ----

  drawTime(p, j) {
    const name = p === this.panels.app ? 'app' : 'pod';
    const metric = this.data.metric;
    const rows = Array.isArray(j.rows) ? j.rows : [];
    const step = this.data.bucketUs;
    const t0 = Math.floor(this.data.fromUs / step) * step;
    const t1 = Math.floor(this.data.toUs / step) * step;
    const n = Math.max(1, Math.min(1000, Math.round((t1 - t0) / step) + 1));
    replace(p.note, `${METRICS[metric]} · ${j.source === 'rollup' ? 'per-minute rollup' : 'counted from the flows'}` +
      (j.other ? ` · other keys: ${fmtMetric(metric, j.other)}` : '') +
      (j.complete === false ? ' · incomplete' : ''));
    if (rows.length === 0) {
      replace(p.body, el('p', { class: 'hint' }, 'Nothing in this range.'));
      return;
    }
    const color = new Map(rows.map((r, i) => [r.key, PALETTE[i % PALETTE.length]]));
    const cols = Array.from({ length: n }, () => new Map());
    for (const b of Array.isArray(j.buckets) ? j.buckets : []) {
      const i = Math.round((b.t - t0) / step);
      if (i < 0 || i >= n) continue;
      cols[i].set(b.key, (cols[i].get(b.key) || 0) + b.value);
    }
    const max = niceMax(Math.max(...cols.map((c) => [...c.values()].reduce((a, v) => a + v, 0))));
    const W = Math.max(300, p.body.clientWidth || 600);
    const H = 220;
    const m = { l: 64, r: 8, t: 8, b: 22 };
    const pw = W - m.l - m.r;
    const ph = H - m.t - m.b;
    const bw = pw / n;
    const test = KEY_TESTS[name];
    const chart = svg('svg', { class: 'chart', width: W, height: H, viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': p.h.textContent });
    for (let k = 0; k <= 4; k++) {
      const y = m.t + ph - (ph * k) / 4;
      chart.appendChild(svg('line', { x1: m.l, x2: W - m.r, y1: y, y2: y, class: 'grid' }));
      chart.appendChild(svg('text', { x: m.l - 6, y: y + 4, class: 'axis', 'text-anchor': 'end' }, fmtMetric(metric, (max * k) / 4)));
    }
    const span = n * step; // over a day, labels carry the date (MM-DD hh:mm): wider
    const labelEvery = Math.max(1, Math.ceil(n / Math.max(2, Math.floor(pw / (span > 86400e6 && step < 86400e6 ? 95 : 70)))));
    for (let i = 0; i < n; i += labelEvery) {
      chart.appendChild(svg('text', { x: m.l + i * bw + bw / 2, y: H - 6, class: 'axis', 'text-anchor': 'middle' },
        fmtAxisTime(t0 + i * step, step, span)));
    }
    const gap = bw > 4 ? 1 : 0;
    cols.forEach((c, i) => {
      let y = m.t + ph;
      for (const r of rows) {
        const v = c.get(r.key);
        if (!v) continue;
        const h = (v / max) * ph;
        y -= h;
        const rect = svg('rect', {
          x: m.l + i * bw + gap / 2, y, width: Math.max(0.5, bw - gap), height: Math.max(0.5, h),
          fill: color.get(r.key), class: 'seg', dataset: { key: r.key },
          on: { click: () => this.pick(test(r.key)) },
        }, svg('title', null, `${r.key || '(none)'} · ${fmtTime(t0 + i * step, false)} · ${fmtMetric(metric, v)}`));
        chart.appendChild(rect);
      }
    });
    const legend = el('ul', { class: 'legend' }, rows.map((r) => el('li', null, el('button', {
      type: 'button', class: 'legend-item', dataset: { key: r.key },
      title: 'Filter: ' + test(r.key), on: { click: () => this.pick(test(r.key)) },
    }, el('span', { class: 'swatch', dataset: { color: color.get(r.key) } }), r.key || '(none)',
    el('span', { class: 'legend-value' }, fmtMetric(metric, r.value))))));
    for (const sw of legend.querySelectorAll('.swatch')) sw.style.background = sw.dataset.color;
    replace(p.body, el('div', { class: 'chart-wrap' }, chart), legend);
  }

  // ---- top talkers ----

  drawTop(p, j) {
    const name = p === this.panels.src ? 'src' : 'dst';
    const metric = this.data.metric;
    const talkers = this.data.talkers;
    // 11 asked for: the 10 largest named ones even when "no name" is among them
    const rows = Array.isArray(j.rows) ? j.rows.filter((r) => r.key).slice(0, 10) : [];
    const unnamed = (Array.isArray(j.rows) ? j.rows : []).find((r) => !r.key);
    replace(p.note, `${METRICS[metric]} · ${name === 'src' ? 'client' : 'server'} ${talkers.note}` +
      (unnamed && talkers.src !== 'src' ? ` · without a name: ${fmtMetric(metric, unnamed.value)}` : ''));
    if (rows.length === 0) {
      replace(p.body, el('p', { class: 'hint' }, unnamed && talkers.src !== 'src'
        ? `No ${name === 'src' ? 'client' : 'server'} in this range has a name of this kind (the agent names ` +
          'the ends with --kubernetes, --kubeconfig or --inventory).'
        : 'Nothing in this range.'));
      return;
    }
    const max = Math.max(...rows.map((r) => r.value)) || 1;
    const test = (k) => talkerTest(talkers[name], k);
    const list = el('ol', { class: 'bars' }, rows.map((r) => {
      const bar = el('span', { class: 'bar' });
      bar.style.width = `${Math.max(1, (100 * r.value) / max)}%`;
      return el('li', null, el('button', {
        type: 'button', class: 'bar-row', dataset: { key: r.key }, title: 'Filter: ' + test(r.key),
        on: { click: () => this.pick(test(r.key)) },
      }, el('span', { class: 'bar-label mono' }, r.key), el('span', { class: 'bar-track' }, bar),
      el('span', { class: 'bar-value' }, fmtMetric(metric, r.value))));
    }));
    replace(p.body, list);
  }

  // ---- who talks to whom ----

  // From the largest flows of the range (the API has no grouping by pair): each
  // connection counted once (records of the same Community ID and addresses at other
  // observation points are the same traffic), its ends named by pod where known.
  drawMatrix(p, j) {
    const flows = Array.isArray(j.flows) ? j.flows : [];
    const metric = this.data.metric;
    const value = (f) => (metric === 'bytes' ? flowBytes(f) : metric === 'packets'
      ? (f.c2s_pkts || 0) + (f.s2c_pkts || 0) : 1);
    const conns = new Map();
    for (const f of flows) {
      const k = f.community_id ? `${f.community_id}|${f.src}|${f.dst}` : 'id:' + f.id;
      const cur = conns.get(k);
      if (!cur || value(f) > value(cur)) conns.set(k, f);
    }
    const end = (pod, addr) => (pod ? { label: pod, test: 'pod', v: pod } : { label: addr || '?', test: 'ip', v: addr });
    const pairs = new Map();
    const srcTot = new Map();
    const dstTot = new Map();
    for (const f of conns.values()) {
      const a = end(f.src_pod, f.src);
      const b = end(f.dst_pod, f.dst);
      const v = value(f);
      const k = a.label + '\u0000' + b.label;
      const cur = pairs.get(k) || { a, b, v: 0, n: 0 };
      cur.v += v;
      cur.n += 1;
      pairs.set(k, cur);
      srcTot.set(a.label, { e: a, v: (srcTot.get(a.label)?.v || 0) + v });
      dstTot.set(b.label, { e: b, v: (dstTot.get(b.label)?.v || 0) + v });
    }
    replace(p.note, `${METRICS[metric]} · from the ${fmtInt(flows.length)} largest flow records of the range` +
      (j.next_cursor ? ' (there are more)' : '') + `, ${fmtInt(conns.size)} connections; pods where known, else addresses`);
    if (pairs.size === 0) {
      replace(p.body, el('p', { class: 'hint' }, 'Nothing in this range.'));
      return;
    }
    const top = (m) => [...m.values()].sort((x, y) => y.v - x.v).slice(0, MATRIX_SIDE).map((x) => x.e);
    const rowsE = top(srcTot);
    const colsE = top(dstTot);
    let max = 0;
    for (const c of pairs.values()) max = Math.max(max, c.v);
    const cellTest = (a, b) => {
      const t = (side, e) => (e.test === 'pod' ? `${side}_pod == ${quoteValue(e.v)}` : `${side} == ${quoteValue(e.v)}`);
      return `${t('src', a)} and ${t('dst', b)}`;
    };
    const table = el('table', { class: 'matrix', id: 'matrix-table' },
      el('thead', null, el('tr', null, el('th', { class: 'corner' }, 'client ↓ / server →'),
        colsE.map((b) => el('th', { scope: 'col', class: 'col-label', title: b.label }, el('span', null, b.label))))),
      el('tbody', null, rowsE.map((a) => el('tr', null,
        el('th', { scope: 'row', title: a.label }, a.label),
        colsE.map((b) => {
          const c = pairs.get(a.label + '\u0000' + b.label);
          if (!c) return el('td', { class: 'empty' });
          const td = el('td', {
            class: 'cell', tabindex: '0', title: `${a.label} → ${b.label}: ${fmtMetric(metric, c.v)} in ${c.n} connection${c.n === 1 ? '' : 's'}`,
            on: {
              click: () => this.pick(cellTest(a, b)),
              keydown: (e) => { if (e.key === 'Enter') this.pick(cellTest(a, b)); },
            },
          }, fmtMetric(metric, c.v));
          const alpha = 0.12 + 0.88 * Math.sqrt(c.v / (max || 1));
          td.style.backgroundColor = `rgba(37, 99, 235, ${alpha.toFixed(3)})`;
          if (alpha > 0.55) td.classList.add('dark');
          return td;
        })))));
    replace(p.body, el('div', { class: 'table-scroll' }, table));
  }
}
