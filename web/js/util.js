// Small helpers shared by every view: DOM building (text only: every value from the
// API goes into the page through textContent or an attribute, never as HTML), number
// and time formatting, and writing filter values so that the filter language reads
// them back as the same string.

const SVG_NS = 'http://www.w3.org/2000/svg';

// Appends children to node: strings and numbers become text nodes, null/false are
// skipped, arrays are flattened.  Nothing is ever parsed as HTML.
function append(node, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(node, c);
    else if (c instanceof Node) node.appendChild(c);
    else node.appendChild(document.createTextNode(String(c)));
  }
  return node;
}

function setAttrs(node, attrs) {
  if (!attrs) return node;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'on') {
      for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    } else if (k === 'class') {
      node.setAttribute('class', v);
    } else if (k === 'dataset') {
      Object.assign(node.dataset, v);
    } else if (k === 'text') {
      node.textContent = String(v);
    } else if (k.startsWith('on')) {
      // Inline handlers would be strings run as code: refuse them outright.
      throw new Error('el(): use the "on" object for event handlers');
    } else {
      node.setAttribute(k, v === true ? '' : String(v));
    }
  }
  return node;
}

export function el(tag, attrs, ...children) {
  return append(setAttrs(document.createElement(tag), attrs), children);
}

export function svg(tag, attrs, ...children) {
  return append(setAttrs(document.createElementNS(SVG_NS, tag), attrs), children);
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function replace(node, ...children) {
  clear(node);
  return append(node, children);
}

// ---- numbers -------------------------------------------------------------

// Powers of 1000, as the filter language's sizes (1M = 1,000,000), so a value read
// off the page can be typed back into a filter.
// v (already divided to units[i]) with 3 significant digits, moving to the next
// unit when rounding reaches 1000 (999,999 B is "1.00 MB", not "1000 kB") and
// dropping a decimal when it reaches 10 or 100 (9,999 B is "10.0 kB").
function scaled(v, i, units, sep) {
  for (;;) {
    const digits = Math.abs(v) < 10 ? 2 : Math.abs(v) < 100 ? 1 : 0;
    let s = v.toFixed(digits);
    const r = Math.abs(Number(s));
    if (r >= 1000 && i < units.length - 1) { v /= 1000; i++; continue; }
    if ((digits === 2 && r >= 10) || (digits === 1 && r >= 100)) s = v.toFixed(digits - 1);
    return s + sep + units[i];
  }
}

export function fmtBytes(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '';
  const units = ['B', 'kB', 'MB', 'GB', 'TB', 'PB'];
  let v = Number(n), i = 0;
  if (Math.abs(v) < 1000) return String(v) + ' B';
  while (Math.abs(v) >= 1000 && i < units.length - 1) { v /= 1000; i++; }
  return scaled(v, i, units, ' ');
}

export function fmtCount(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '';
  const v = Number(n);
  if (Math.abs(v) < 10000) return String(v);
  const units = ['', 'k', 'M', 'G', 'T'];
  let x = v, i = 0;
  while (Math.abs(x) >= 1000 && i < units.length - 1) { x /= 1000; i++; }
  return scaled(x, i, units, '');
}

export function fmtInt(n) {
  if (n === null || n === undefined) return '';
  return Number(n).toLocaleString('en-US');
}

// µs -> "1.2 ms", "3.40 s", "2h05m"
export function fmtDur(us) {
  if (us === null || us === undefined || Number.isNaN(us)) return '';
  const v = Number(us);
  if (v < 1000) return v + ' µs';
  // a value that rounds up to the next unit is written in it (999,999 µs: 1.00 s)
  if (v < 1e6) {
    const ms = (v / 1000).toFixed(v < 9995 ? 2 : 1);
    if (Number(ms) < 1000) return ms + ' ms';
  }
  if (v < 60e6) {
    const s = (v / 1e6).toFixed(2);
    if (Number(s) < 60) return s + ' s';
  }
  const s = Math.round(v / 1e6);
  if (s < 3600) return Math.floor(s / 60) + 'm' + String(s % 60).padStart(2, '0') + 's';
  if (s < 86400) return Math.floor(s / 3600) + 'h' + String(Math.floor(s / 60) % 60).padStart(2, '0') + 'm';
  return Math.floor(s / 86400) + 'd' + String(Math.floor(s / 3600) % 24).padStart(2, '0') + 'h';
}

// ---- time ----------------------------------------------------------------

const pad = (n, w = 2) => String(n).padStart(w, '0');

// µs since the epoch -> "2024-11-29 06:00:00.123" (UTC, as `podcap flows` prints)
export function fmtTime(us, withMs = true) {
  if (us === null || us === undefined) return '';
  const d = new Date(Math.floor(Number(us) / 1000));
  if (Number.isNaN(d.getTime())) return '';
  const s = `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`;
  return withMs ? s + '.' + pad(d.getUTCMilliseconds(), 3) : s;
}

// A time-axis label: the shortest form that still tells buckets of this width apart.
// spanUs: the whole axis; over more than a day a clock time carries its date.
export function fmtAxisTime(us, stepUs, spanUs = 0) {
  const d = new Date(Math.floor(us / 1000));
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  const day = spanUs > 86400e6 ? `${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` : '';
  if (stepUs < 60e6) return day + hm + ':' + pad(d.getUTCSeconds());
  if (stepUs < 86400e6) return day + hm;
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())}`;
}

const UNIT_US = { us: 1, 'µs': 1, ms: 1e3, s: 1e6, m: 60e6, min: 60e6, h: 3600e6, d: 86400e6 };

// The time forms of docs/filters.md's "Time ranges" that the page needs to turn into
// numbers (to size chart buckets): "now", "-1h", "now-30m", "1h30m", RFC 3339, a date,
// epoch seconds.  Returns µs, or null when the text is none of them (the API still
// gets the text as typed and says what is wrong with it).
export function parseTimeUs(text, nowUs) {
  const t = String(text || '').trim();
  if (t === '' || t === 'now') return nowUs;
  let m = /^(?:now)?\s*([+-]?)\s*((?:\d+(?:\.\d+)?(?:us|µs|ms|s|min|m|h|d))+)$/.exec(t);
  if (m) {
    let total = 0;
    for (const part of m[2].matchAll(/(\d+(?:\.\d+)?)(us|µs|ms|s|min|m|h|d)/g))
      total += parseFloat(part[1]) * UNIT_US[part[2]];
    return m[1] === '+' ? nowUs + total : nowUs - total;
  }
  if (/^\d+(\.\d+)?$/.test(t)) return Math.round(parseFloat(t) * 1e6);
  m = /^(\d{4}-\d\d-\d\d)(?:[T ](\d\d:\d\d(?::\d\d(?:\.\d+)?)?))?(Z|[+-]\d\d:?\d\d)?$/.exec(t);
  if (m) {
    const iso = m[1] + 'T' + (m[2] || '00:00:00') + (m[3] || 'Z');
    const ms = Date.parse(iso);
    if (!Number.isNaN(ms)) return ms * 1000;
  }
  return null;
}

// ---- the filter language ---------------------------------------------------

const KEYWORDS = new Set(['and', 'or', 'not', 'in', 'exists', 'eq', 'ne', 'lt', 'le', 'gt', 'ge']);

// A value as the filter language reads it back unchanged: bare when it is a plain
// word, otherwise in double quotes with \" and \\ escaped (docs/filters.md, Values).
export function quoteValue(v) {
  const s = String(v);
  if (/^[A-Za-z0-9_.:/*+@-]+$/.test(s) && !KEYWORDS.has(s.toLowerCase())) return s;
  return '"' + s.replace(/[\\"]/g, (c) => '\\' + c) + '"';
}

// "cur and test", with cur in parentheses when it has an "or" that would otherwise
// bind looser than the new "and".
export function andFilter(cur, test) {
  const c = (cur || '').trim();
  if (!c) return test;
  if (/\bor\b|\|\|/i.test(c)) return `(${c}) and ${test}`;
  return `${c} and ${test}`;
}

// The API counts filter positions in Unicode code points from 1; JavaScript strings
// index UTF-16 units from 0.
export function cpToIndex(str, pos) {
  const cps = Array.from(str);
  const n = Math.max(0, Math.min(cps.length, pos - 1));
  return cps.slice(0, n).join('').length;
}

// ---- flows -----------------------------------------------------------------

const PROTOS = { 1: 'ICMP', 2: 'IGMP', 6: 'TCP', 17: 'UDP', 47: 'GRE', 50: 'ESP', 58: 'ICMPv6', 132: 'SCTP' };
export function protoName(p) {
  return PROTOS[p] || (p === null || p === undefined ? '' : String(p));
}

export function addrPort(addr, port) {
  if (!addr) return '';
  const a = addr.includes(':') ? `[${addr}]` : addr;
  return port === null || port === undefined ? a : `${a}:${port}`;
}

const FLAG_NAMES = ['FIN', 'SYN', 'RST', 'PSH', 'ACK', 'URG', 'ECE', 'CWR'];
export function tcpFlags(bits) {
  if (!bits) return '';
  return FLAG_NAMES.filter((_, i) => bits & (1 << i)).join(' ');
}

export function flowBytes(f) { return (f.c2s_bytes || 0) + (f.s2c_bytes || 0); }
export function flowPackets(f) { return (f.c2s_pkts || 0) + (f.s2c_pkts || 0); }
export function flowRetrans(f) { return (f.c2s_retrans || 0) + (f.s2c_retrans || 0); }

// Ids are decimal strings (64 bits do not fit a JavaScript number).
export function idGreater(a, b) {
  return BigInt(a) > BigInt(b);
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}
