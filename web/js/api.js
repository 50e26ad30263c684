// The page's only way to the agent: GET requests to the public API (docs/api.md) on
// the page's own origin.  It also keeps the "agent reachable?" state: a request that
// gets no HTTP answer at all marks the agent down, and from then on /healthz is tried
// with a growing delay (1 s, 2 s, 4 s ... at most 10 s) until it answers; listeners
// (the banner, the views) hear 'down', 'retry' (once a second, for the countdown),
// 'up' and 'auth' (a bearer token is needed).

const TOKEN_KEY = 'podcap.token';
const REQUEST_TIMEOUT_MS = 30000; // the server stops a query after 10 s of SQLite work
const listeners = new Set();
const link = {
  down: false,
  reason: '',
  attempt: 0,
  nextAt: 0,
  timer: null,
  ticker: null,
};

export class ApiError extends Error {
  constructor(status, body, network = false) {
    super((body && typeof body.error === 'string' && body.error) ||
      (network ? 'cannot reach the agent' : `HTTP ${status}`));
    this.status = status;
    this.network = network;
    this.body = body || {};
    // Filter errors carry the position (code points from 1), what was found and
    // what was expected (docs/api.md).
    this.position = Number.isInteger(this.body.position) ? this.body.position : null;
    this.found = typeof this.body.found === 'string' ? this.body.found : null;
    this.expected = typeof this.body.expected === 'string' ? this.body.expected : null;
  }
}

export function onLinkChange(fn) {
  listeners.add(fn);
  return () => listeners.delete(fn);
}

function emit(kind) {
  for (const fn of listeners) {
    try { fn(kind, linkState()); } catch (e) { console.error(e); }
  }
}

export function linkState() {
  return {
    down: link.down,
    reason: link.reason,
    attempt: link.attempt,
    retryInS: link.down ? Math.max(0, Math.ceil((link.nextAt - Date.now()) / 1000)) : 0,
  };
}

export function token() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage refused: the token lives only for this call */ }
}

function headers() {
  const t = token();
  return t ? { Authorization: 'Bearer ' + t } : {};
}

// A same-origin URL with the parameters that have a value.
export function apiUrl(path, params) {
  const u = new URL(path, location.origin);
  if (params) {
    for (const [k, v] of Object.entries(params)) {
      if (v === null || v === undefined || v === '') continue;
      u.searchParams.set(k, String(v));
    }
  }
  return u.pathname + u.search;
}

function timeoutSignal(signal) {
  const t = AbortSignal.timeout(REQUEST_TIMEOUT_MS);
  return signal ? AbortSignal.any([signal, t]) : t;
}

// Resolves to the parsed JSON of a 2xx answer; rejects with ApiError (HTTP errors, with
// the API's message and a filter error's position) or the caller's AbortError.
export async function getJSON(path, params, { signal } = {}) {
  const url = apiUrl(path, params);
  let r;
  try {
    r = await fetch(url, { headers: headers(), signal: timeoutSignal(signal), cache: 'no-store' });
  } catch (e) {
    if (signal && signal.aborted) throw e; // the caller moved on: not an outage
    markDown(e && e.name === 'TimeoutError' ? 'no answer in 30 s' : (e && e.message) || 'network error');
    throw new ApiError(0, null, true);
  }
  let body = null;
  try { body = await r.json(); } catch { body = null; }
  if (r.status === 502 || r.status === 504) {
    // A proxy in front of the agent answered for it: the agent itself is gone.
    markDown(`HTTP ${r.status} from a proxy`);
    throw new ApiError(r.status, body, true);
  }
  markUp();
  if (r.status === 401) emit('auth');
  if (!r.ok) throw new ApiError(r.status, body);
  if (body === null) throw new ApiError(r.status, { error: 'the answer is not JSON' });
  return body;
}

// Downloads (pcap, CSV) are plain links the browser streams to disk; with a bearer
// token they cannot carry the header, so they are fetched here instead (whole in
// memory: fine for a flow, a page or a filtered capture of moderate size).
export async function download(path, params, fallbackName) {
  const url = apiUrl(path, params);
  if (!token()) {
    // a link's failure is only a cancelled download the page never hears of: ask
    // the agent first whether it answers at all (the answer itself streams to disk)
    let up = false;
    try { up = (await fetch('/healthz', { cache: 'no-store', signal: AbortSignal.timeout(5000) })).ok; } catch { up = false; }
    if (!up) throw new ApiError(0, { error: 'the agent did not answer; nothing was downloaded' });
    const a = document.createElement('a');
    a.href = url;
    a.download = fallbackName || '';
    document.body.appendChild(a);
    a.click();
    a.remove();
    return;
  }
  const r = await fetch(url, { headers: headers() });
  if (!r.ok) {
    let body = null;
    try { body = await r.json(); } catch { body = null; }
    throw new ApiError(r.status, body);
  }
  const cd = r.headers.get('content-disposition') || '';
  const m = /filename="([^"]+)"/.exec(cd);
  const blob = await r.blob();
  const obj = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = obj;
  a.download = (m && m[1]) || fallbackName || 'podcap-download';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(obj), 60000);
}

// ---- reachability -----------------------------------------------------------

function markDown(reason) {
  if (link.down) {
    link.reason = reason;
    return;
  }
  link.down = true;
  link.reason = reason;
  link.attempt = 0;
  schedule();
  link.ticker = setInterval(() => emit('retry'), 1000);
  emit('down');
}

function markUp() {
  if (!link.down) return;
  link.down = false;
  clearTimeout(link.timer);
  clearInterval(link.ticker);
  link.timer = link.ticker = null;
  emit('up');
}

function schedule() {
  const delay = Math.min(1000 * 2 ** link.attempt, 10000);
  link.nextAt = Date.now() + delay;
  clearTimeout(link.timer);
  link.timer = setTimeout(probe, delay);
}

async function probe() {
  if (!link.down) return;
  link.attempt++;
  try {
    const r = await fetch('/healthz', { cache: 'no-store', signal: AbortSignal.timeout(5000) });
    if (r.ok) {
      markUp();
      return;
    }
    link.reason = `/healthz answered HTTP ${r.status}`;
  } catch (e) {
    link.reason = (e && e.message) || 'network error';
  }
  schedule();
  emit('retry');
}

// "Retry now" in the banner.
export function retryNow() {
  if (!link.down) return;
  clearTimeout(link.timer);
  probe();
}

export function isDown() {
  return link.down;
}
