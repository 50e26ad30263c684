#!/usr/bin/env python3
"""Drives tests/server/srv-test over the wire: curl for HTTP/1.1, h2c (prior knowledge)
and h2 over TLS; raw sockets for hostile input.

usage: srv_test.py SRV_TEST_BINARY CASE

Each case starts its own server on an ephemeral port and stops it with SIGTERM at the
end; the server must exit 0 (under the ASan build, LeakSanitizer turns a leak into a
non-zero exit and a report on stderr, which fails the case).  Waits are bounded polls,
never timing assertions.
"""
import hashlib
import http.client
import json
import os
import random
import re
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

BIN = None
TMP = None
FAILS = []
SERVERS = []


def check(cond, what):
    if not cond:
        FAILS.append(what)
        print(f'FAIL: {what}', flush=True)
    else:
        print(f'ok: {what}', flush=True)
    return cond


def pattern(n, off=0):
    """The bytes srv-test streams: byte at offset o is o % 251."""
    block = bytes(range(251))
    start = off % 251
    rep = (block[start:] + block * (n // 251 + 2))[:n]
    return rep


def pattern_sha(n):
    h = hashlib.sha256()
    off = 0
    block = bytes(range(251)) * 4096  # 1028096 bytes: a multiple of 251
    while off < n:
        k = min(len(block), n - off)
        h.update(block[:k])
        off += k
    return h.hexdigest()


class Server:
    def __init__(self, *args, token=None, tls=False, expect_fail=False):
        self.token = token
        self.tls = tls
        fd, self.port_file = tempfile.mkstemp(dir=TMP, prefix='port')
        os.close(fd)
        os.unlink(self.port_file)
        self.log = open(os.path.join(TMP, f'server{len(SERVERS)}.log'), 'w+')
        SERVERS.append(self)
        cmd = [BIN, '--listen', '127.0.0.1:0', '--port-file', self.port_file]
        cmd += list(args)
        # A later --listen wins (getopt), so tests can override it.
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None
        if expect_fail:
            return
        for _ in range(200):
            if os.path.exists(self.port_file):
                with open(self.port_file) as f:
                    self.port = int(f.read())
                break
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        if self.port is None:
            self.log.seek(0)
            raise SystemExit(f'server did not start: {self.log.read()}')

    def output(self):
        self.log.flush()
        self.log.seek(0)
        return self.log.read()

    def url(self, path, scheme=None):
        scheme = scheme or ('https' if self.tls else 'http')
        return f'{scheme}://127.0.0.1:{self.port}{path}'

    def get(self, path, headers=None, method='GET', body=None):
        """One HTTP/1.1 request with the standard library: (status, headers, body)."""
        if self.tls:
            ctx = ssl.create_default_context(cafile=os.path.join(TMP, 'cert.pem'))
            c = http.client.HTTPSConnection('127.0.0.1', self.port, timeout=30, context=ctx)
        else:
            c = http.client.HTTPConnection('127.0.0.1', self.port, timeout=30)
        h = dict(headers or {})
        if self.token and 'Authorization' not in h:
            h['Authorization'] = 'Bearer ' + self.token
        c.request(method, path, body=body, headers=h)
        r = c.getresponse()
        data = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        return r.status, hdrs, data

    def stats(self):
        st, _, body = self.get('/stats')
        assert st == 200, st
        return json.loads(body)

    def wait_stat(self, pred, what, limit=30):
        deadline = time.monotonic() + limit
        s = self.stats()
        while not pred(s) and time.monotonic() < deadline:
            time.sleep(0.1)
            s = self.stats()
        return check(pred(s), what + f' (stats: {json.dumps(s)})' if not pred(s) else what)

    def pid_hwm_kb(self):
        with open(f'/proc/{self.proc.pid}/status') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return int(line.split()[1])
        return -1

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
            check(False, 'server stopped within 60 s of SIGTERM')
        out = self.output()
        check(rc == 0, f'server exited 0 (got {rc})')
        bad = [l for l in out.splitlines()
               if 'Sanitizer' in l or 'runtime error' in l or 'Assertion' in l]
        check(not bad, 'no sanitizer report or assertion: ' + ' | '.join(bad[:5]))
        m = re.search(r'stopped \(\d+\): (\{.*\})', out)
        return json.loads(m.group(1)) if m else None


def curl(*args, token=None, timeout=120):
    """Runs curl; returns (rc, status, http_version, headers dict, body bytes)."""
    hfile = os.path.join(TMP, 'curl.h')
    bfile = os.path.join(TMP, 'curl.b')
    for f in (hfile, bfile):
        if os.path.exists(f):
            os.unlink(f)
    cmd = ['curl', '-s', '-S', '-D', hfile, '-o', bfile, '-w', '%{http_code} %{http_version}',
           '--cacert', os.path.join(TMP, 'cert.pem')]
    if token:
        cmd += ['-H', 'Authorization: Bearer ' + token]
    cmd += list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=timeout)
    out = p.stdout.decode().split()
    status = int(out[0]) if out else 0
    version = out[1] if len(out) > 1 else ''
    headers = {}
    if os.path.exists(hfile):
        with open(hfile, 'rb') as f:
            for line in f.read().decode('latin-1').splitlines():
                if ':' in line and not line.startswith('HTTP/'):
                    k, v = line.split(':', 1)
                    headers[k.strip().lower()] = v.strip()
    body = b''
    if os.path.exists(bfile):
        with open(bfile, 'rb') as f:
            body = f.read()
    return p.returncode, status, version, headers, body


class H2:
    """A minimal HTTP/2 client over cleartext (prior knowledge): just what the tests
    need.  Requests use HPACK literals; of the answer's head only ":status: 200" (static
    index 8, which h2o sends as the first field) is recognised."""

    def __init__(self, port):
        self.s = socket.create_connection(('127.0.0.1', port), timeout=30)
        self.buf = b''
        self.s.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + self.frame(4, 0, 0, b''))

    @staticmethod
    def frame(ftype, flags, sid, payload):
        return len(payload).to_bytes(3, 'big') + bytes([ftype, flags]) + sid.to_bytes(4, 'big') + payload

    @staticmethod
    def lit(name, value):
        n, v = name.encode(), value.encode()
        assert len(n) < 127 and len(v) < 127
        return b'\x00' + bytes([len(n)]) + n + bytes([len(v)]) + v

    def request(self, sid, path):
        block = self.lit(':method', 'GET') + self.lit(':scheme', 'http') + self.lit(':path', path) + self.lit(':authority', 'x')
        self.s.sendall(self.frame(1, 0x5, sid, block))  # END_STREAM | END_HEADERS

    def rst(self, sid):
        self.s.sendall(self.frame(3, 0, sid, (8).to_bytes(4, 'big')))  # CANCEL

    def read_frame(self):
        while len(self.buf) < 9 or len(self.buf) < 9 + int.from_bytes(self.buf[:3], 'big'):
            b = self.s.recv(65536)
            if not b:
                raise ConnectionError('h2 connection closed')
            self.buf += b
        n = int.from_bytes(self.buf[:3], 'big')
        ftype, flags = self.buf[3], self.buf[4]
        sid = int.from_bytes(self.buf[5:9], 'big') & 0x7fffffff
        payload = self.buf[9:9 + n]
        self.buf = self.buf[9 + n:]
        return ftype, flags, sid, payload

    def collect(self, sids, grow_stream_window=True, until=None):
        """Reads until every stream in sids ended; returns per-stream results (also for
        other streams seen meanwhile).  The connection window is always refilled; stream
        windows only if grow_stream_window."""
        res = {}
        done = set()
        while not set(sids) <= done or (until is not None and not until(res)):
            ftype, flags, sid, payload = self.read_frame()
            r = res.setdefault(sid, {'status200': False, 'data': b'', 'bytes': 0})
            if ftype == 4 and not flags & 1:
                self.s.sendall(self.frame(4, 1, 0, b''))
            elif ftype == 6 and not flags & 1:
                self.s.sendall(self.frame(6, 1, 0, payload))
            elif ftype == 1:
                p = payload
                if flags & 0x8:
                    p = p[1:len(p) - p[0]]
                if flags & 0x20:
                    p = p[5:]
                r['status200'] = p[:1] == b'\x88'
                if flags & 1:
                    done.add(sid)
            elif ftype == 0:
                r['data'] += payload
                r['bytes'] += len(payload)
                if payload:
                    self.s.sendall(self.frame(8, 0, 0, len(payload).to_bytes(4, 'big')))
                    if grow_stream_window and not flags & 1:
                        self.s.sendall(self.frame(8, 0, sid, len(payload).to_bytes(4, 'big')))
                if flags & 1:
                    done.add(sid)
            elif ftype == 3:
                done.add(sid)
            elif ftype == 7:
                raise ConnectionError('GOAWAY')
        return res

    def close(self):
        self.s.close()


def complete_response(buf):
    """True once buf holds a whole HTTP/1.1 answer with a Content-Length (keep-alive
    answers are not followed by a close)."""
    head, sep, body = buf.partition(b'\r\n\r\n')
    if not sep:
        return False
    m = re.search(rb'(?im)^content-length:\s*(\d+)', head)
    return m is not None and len(body) >= int(m.group(1))


def raw(port, data, read_timeout=10, shut_write=False):
    """Sends bytes on a fresh connection; returns everything read until close/timeout."""
    s = socket.create_connection(('127.0.0.1', port), timeout=read_timeout)
    try:
        s.sendall(data)
        if shut_write:
            s.shutdown(socket.SHUT_WR)
        out = b''
        while not complete_response(out):
            try:
                b = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not b:
                break
            out += b
        return out
    finally:
        s.close()


def status_of(resp):
    m = re.match(rb'HTTP/1\.[01] (\d{3})', resp)
    return int(m.group(1)) if m else None


def json_body(body):
    try:
        return json.loads(body)
    except ValueError:
        return None


def is_json_error(body, status):
    j = json_body(body)
    return isinstance(j, dict) and j.get('status') == status and isinstance(j.get('error'), str)


def make_cert():
    cert = os.path.join(TMP, 'cert.pem')
    key = os.path.join(TMP, 'key.pem')
    if not os.path.exists(cert):
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
                        '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext',
                        'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', key, '-out', cert],
                       check=True, capture_output=True)
    return cert, key


def write_token(tok):
    path = os.path.join(TMP, 'token')
    with open(path, 'w') as f:
        f.write(tok + '\n')
    os.chmod(path, 0o600)
    return path


# ---------------------------------------------------------------- cases

def case_basic():
    s = Server()
    st, h, b = s.get('/inline')
    check(st == 200 and json_body(b) == {'ok': True}, 'inline route answers {"ok": true}')
    check(h.get('content-type') == 'application/json', 'content type application/json')
    check(not any(k.startswith('access-control-') for k in h), 'no CORS headers by default')
    st, h, b = s.get('/worker')
    check(st == 200 and json_body(b) == {'ok': True}, 'worker route answers')

    st, h, b = s.get('/echo/a%20b?x=1&v=2&v=3+4&e=%C3%A9&empty=&flag', headers={'X-Test': 'hello'})
    j = json_body(b) or {}
    check(st == 200 and j.get('id') == 'a b', 'path parameter percent-decoded')
    check(j.get('query') == [['x', '1'], ['v', '2'], ['v', '3 4'], ['e', 'é'], ['empty', ''], ['flag', '']],
          f'query parameters decoded in order, repeated kept: {j.get("query")}')
    check(j.get('v_count') == 2, 'srv_req_query_all counts repeated parameters')
    check(j.get('x_test') == 'hello' and h.get('x-echo') == 'yes', 'request header read, response header added')
    check(j.get('version') == 0x101 and j.get('peer', '').startswith('127.0.0.1:'), 'version and peer')

    st, h, b = s.get('/echo/1', method='HEAD')
    check(st == 200 and b == b'' and int(h.get('content-length', '0')) > 0, 'HEAD: headers with length, no body')
    st, h, b = s.get('/big?mb=5', method='HEAD')
    check(st == 200 and b == b'' and 'transfer-encoding' not in h, 'HEAD on a streamed route: head only')
    s.wait_stat(lambda st: st['big_failed'] == 1 and st['big_last_err'] == -32, 'HEAD: the stream writer got -EPIPE at once')

    st, h, b = s.get('/body', method='POST', body=b'x' * 1000)
    check(st == 200 and json_body(b) == {'len': 1000}, 'POST body of 1000 bytes read')

    rc, st, ver, h, b = curl(s.url('/big?mb=5'))
    check(rc == 0 and st == 200 and len(b) == 5 << 20 and hashlib.sha256(b).hexdigest() == pattern_sha(5 << 20),
          'streamed 5 MiB arrive intact (HTTP/1.1 chunked)')
    check(h.get('transfer-encoding') == 'chunked', 'streamed answer is chunked on HTTP/1.1')
    rc, st, ver, h, b = curl(s.url('/whole?kb=3000'))
    check(rc == 0 and st == 200 and b == pattern(3000 << 10) and h.get('content-length') == str(3000 << 10),
          'whole 3000 KiB answer intact with Content-Length')

    st, h, b = s.get('/noanswer')
    check(st == 500 and is_json_error(b, 500), 'a handler without answer gives a JSON 500')
    rc, st, ver, h, b = curl(s.url('/abort'))
    check(rc != 0, f'an aborted stream is visibly incomplete (curl rc {rc})')
    rc, st, ver, h, b = curl(s.url('/slow?lines=5&ms=30'))
    check(rc == 0 and b == b''.join(b'line %d\n' % i for i in range(5)), 'slow producer: 5 lines')

    p = subprocess.run(['curl', '-s', '-w', '%{num_connects}\n', '-o', '/dev/null', s.url('/inline'),
                        '-o', '/dev/null', s.url('/worker'), '-o', '/dev/null', s.url('/echo/1')],
                       capture_output=True, text=True)
    check(p.stdout.split() == ['1', '0', '0'], f'keep-alive: 3 requests, 1 connection ({p.stdout.split()})')

    stats = s.stats()
    check(stats['responses'][2] >= 8 and stats['responses'][5] >= 1, 'answers counted by status class')
    check(stats['bytes_out'] >= 5 << 20 and stats['bytes_in'] >= 1000, 'bytes counted')
    s.stop()


def case_routing():
    s = Server()
    st, _, b = s.get('/r/lit/x/5')
    j = json_body(b) or {}
    check(st == 200 and j.get('b') == '5' and 'a' not in j, 'the route with more literal segments wins')
    st, _, b = s.get('/r/foo/x/5')
    j = json_body(b) or {}
    check(st == 200 and j.get('a') == 'foo' and j.get('b') == '5', 'two path parameters')
    for path in ['/echo/', '/echo/1/2', '/ECHO/1', '/echo', '/', '/echo//1', '/r/a/x/']:
        st, h, b = s.get(path)
        check(st == 404 and is_json_error(b, 404), f'{path}: 404 JSON')
    st, h, b = s.get('/echo/1', method='DELETE')
    check(st == 200, 'a second method on the same pattern')
    st, h, b = s.get('/echo/1', method='PUT')
    check(st == 405 and h.get('allow') == 'GET, HEAD, DELETE' and is_json_error(b, 405),
          f'405 with Allow: {h.get("allow")}')
    st, h, b = s.get('/inline', method='OPTIONS')
    check(st == 405 and not any(k.startswith('access-control-') for k in h), 'OPTIONS: 405, no CORS')
    st, h, b = s.get('/echo/%zz')
    check(st == 400 and is_json_error(b, 400) and 'offset 6' in json_body(b)['error'], 'bad escape in path: 400 with offset')
    st, h, b = s.get('/echo/a%00b')
    check(st == 400, '%00 in the path: 400')
    st, h, b = s.get('/echo/1?a=1&b=%G1')
    check(st == 400 and 'offset 6' in (json_body(b) or {}).get('error', ''), 'bad escape in query: 400 with offset')
    st, h, b = s.get('/echo/1?' + '&'.join(f'p{i}=1' for i in range(65)))
    check(st == 400 and 'too many query parameters' in (json_body(b) or {}).get('error', ''), '65 parameters: 400')
    st, h, b = s.get('/echo/1?' + '&'.join(f'p{i}=1' for i in range(64)))
    check(st == 200, '64 parameters: accepted')
    st, h, b = s.get('/echo/1?filter=a%00b')
    check(st == 200 and (json_body(b) or {}).get('query') == [['filter', 'a\x00b']], 'NUL inside a query value kept with its length')
    st, h, b = s.get('/ui/../echo/1')
    check(st == 404, 'dot segments are not resolved into another route')
    s.stop()


def case_static():
    s = Server()
    here = os.path.dirname(os.path.abspath(__file__))
    files = {p: open(os.path.join(here, 'fixtures', p), 'rb').read() for p in ['index.html', 'style.css', 'js/app.js']}
    st, h, b = s.get('/ui/')
    check(st == 200 and b == files['index.html'] and h.get('content-type') == 'text/html; charset=utf-8',
          'index.html at the prefix')
    etag = h.get('etag', '')
    check(re.fullmatch(r'"[0-9a-f]{32}"', etag) is not None and h.get('cache-control') == 'no-cache',
          f'ETag and Cache-Control: no-cache ({etag})')
    st, h, b = s.get('/ui')
    check(st == 301 and h.get('location') == '/ui/', 'prefix without slash: 301 to /ui/')
    st, h, b = s.get('/ui/js/app.js')
    check(st == 200 and b == files['js/app.js'] and h.get('content-type') == 'text/javascript; charset=utf-8', 'app.js')
    st, h, b = s.get('/ui/style.css')
    check(st == 200 and b == files['style.css'] and h.get('content-type') == 'text/css; charset=utf-8', 'style.css')
    css_etag = h.get('etag')
    st, h, b = s.get('/ui/style.css', headers={'If-None-Match': css_etag})
    check(st == 304 and b == b'' and h.get('etag') == css_etag, 'If-None-Match: 304 without body')
    st, h, b = s.get('/ui/style.css', headers={'If-None-Match': 'W/' + css_etag + ', "other"'})
    check(st == 304, 'weak and listed ETags match')
    st, h, b = s.get('/ui/style.css', headers={'If-None-Match': '"other"'})
    check(st == 200 and b == files['style.css'], 'another ETag: 200')
    st, h, b = s.get('/ui/style.css', method='HEAD')
    check(st == 200 and b == b'' and h.get('content-length') == str(len(files['style.css'])), 'HEAD on an asset')
    st, h, b = s.get('/ui/missing.js')
    check(st == 404 and is_json_error(b, 404), 'missing asset: 404 JSON')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/ui/js/app.js'))
    check(rc == 0 and st == 200 and ver == '2' and b == files['js/app.js'], 'asset over h2c')
    s.stop()


def case_http2():
    s = Server()
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/inline'))
    check(rc == 0 and st == 200 and ver == '2' and json_body(b) == {'ok': True}, 'h2c prior knowledge: inline')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/echo/x%2Fy?q=1'))
    j = json_body(b) or {}
    check(rc == 0 and j.get('version') == 0x200 and j.get('id') == 'x/y', 'h2c: worker route, version 2.0')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/big?mb=20'))
    check(rc == 0 and len(b) == 20 << 20 and hashlib.sha256(b).hexdigest() == pattern_sha(20 << 20),
          '20 MiB streamed over h2c (DATA frames) intact')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/nope'))
    check(st == 404 and is_json_error(b, 404), 'h2c: 404 JSON')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/abort'))
    check(rc != 0, f'h2c: aborted stream is an error for the client (curl rc {rc})')
    # Several streams on one connection (raw client: curl 7.88 cannot reuse an h2c
    # prior-knowledge connection, curl/curl#10634).
    h2 = H2(s.port)
    for i in range(8):
        h2.request(1 + 2 * i, '/slow?lines=3&ms=20' if i % 2 else '/echo/%d' % i)
    res = h2.collect([1 + 2 * i for i in range(8)])
    check(all(res[1 + 2 * i]['status200'] for i in range(8)), 'h2c: 8 concurrent streams on one connection answered')
    check(all(json_body(res[1 + 2 * i]['data']).get('id') == str(i) for i in range(0, 8, 2)) and
          all(res[1 + 2 * i]['data'] == b'line 0\nline 1\nline 2\n' for i in range(1, 8, 2)), 'h2c: stream bodies intact')
    # A stream stalled by flow control does not hold up another; RST_STREAM ends it.
    h2.request(17, '/big?mb=100')
    res = h2.collect([], grow_stream_window=False, until=lambda r: r.get(17, {}).get('bytes', 0) >= 65535)
    h2.request(19, '/inline')
    res2 = h2.collect([19], grow_stream_window=False)
    check(res2[19]['status200'] and json_body(res2[19]['data']) == {'ok': True},
          'h2c: a stream is answered while another is blocked by flow control')
    got17 = res[17]['bytes'] + res2.get(17, {}).get('bytes', 0)
    check(got17 == 65535, f'h2c: the blocked stream got exactly its window ({got17} bytes)')
    h2.rst(17)
    s.wait_stat(lambda st: st['big_failed'] >= 1 and st['big_last_err'] == -32, 'h2c RST_STREAM: the writer got -EPIPE')
    h2.request(21, '/echo/21')
    res = h2.collect([21])
    check(res[21]['status200'] and json_body(res[21]['data']).get('id') == '21', 'h2c: the connection serves new streams after a reset')
    h2.close()
    # Parallel streams with curl over TLS (ALPN h2) are in case_tls.
    rc, st, ver, h, b = curl('--http2-prior-knowledge', '-X', 'POST', '--data-binary', 'x' * 500, s.url('/body'))
    check(rc == 0 and json_body(b) == {'len': 500}, 'h2c: request body')
    s.stop()


def case_tls():
    cert, key = make_cert()
    s = Server('--tls-cert', cert, '--tls-key', key, tls=True)
    rc, st, ver, h, b = curl('--http2', s.url('/inline'))
    check(rc == 0 and st == 200 and ver == '2', f'h2 over TLS via ALPN (version {ver})')
    rc, st, ver, h, b = curl('--http1.1', s.url('/echo/7?a=b'))
    check(rc == 0 and st == 200 and ver == '1.1' and (json_body(b) or {}).get('id') == '7', 'HTTP/1.1 over TLS')
    rc, st, ver, h, b = curl('--http2', s.url('/big?mb=10'))
    check(rc == 0 and len(b) == 10 << 20 and hashlib.sha256(b).hexdigest() == pattern_sha(10 << 20), '10 MiB over h2+TLS')
    out = os.path.join(TMP, 'par')
    os.makedirs(out, exist_ok=True)
    urls = []
    for i in range(8):
        urls += [s.url('/whole?kb=2048' if i % 2 else '/slow?lines=3&ms=20'), '-o', os.path.join(out, f'{i}')]
    p = subprocess.run(['curl', '-s', '-S', '--http2', '--cacert', cert, '-Z', '--parallel-max', '8',
                        '-w', '%{http_code} %{num_connects} %{http_version}\n'] + urls,
                       capture_output=True, text=True, timeout=120)
    lines = [l.split() for l in p.stdout.split('\n') if l.strip()]
    sizes = [os.path.getsize(os.path.join(out, f'{i}')) if os.path.exists(os.path.join(out, f'{i}')) else -1
             for i in range(8)]
    check(p.returncode == 0 and [l[0] for l in lines] == ['200'] * 8 and all(l[2] == '2' for l in lines),
          f'8 parallel h2 streams over TLS answered ({lines})')
    check(sum(int(l[1]) for l in lines) == 1, 'the 8 streams shared one connection')
    check(all(sizes[i] == (2 << 20 if i % 2 else 21) for i in range(8)), f'parallel streams intact {sizes}')
    rc, st, ver, h, b = curl(s.url('/inline', scheme='http'))
    check(st != 200, 'plain HTTP to the TLS port does not get an answer')
    data = raw(s.port, os.urandom(3000))
    st, h, b = s.get('/inline')
    check(st == 200, 'the TLS server answers after garbage handshakes')
    # Clients that reset their TLS connections (RST, no close_notify), idle and
    # mid-answer: h2o 2.2.5 on libuv would wait forever to write its close_notify on
    # them; the server must still free every one.
    ctx = ssl.create_default_context(cafile=cert)
    before = s.stats()['connections_active']
    for i in range(20):
        raw_sock = socket.create_connection(('127.0.0.1', s.port), timeout=10)
        c = ctx.wrap_socket(raw_sock, server_hostname='127.0.0.1')
        if i % 2:
            c.sendall(b'GET /big?mb=50 HTTP/1.1\r\nHost: x\r\n\r\n')
            c.recv(1000)
        else:
            c.sendall(b'GET /inline HTTP/1.1\r\nHost: x\r\n\r\n')
            c.recv(1000)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b'\x01\x00\x00\x00\x00\x00\x00\x00')
        c.close()
    s.wait_stat(lambda st: st['connections_active'] <= before, f'20 reset TLS connections all freed (active back to {before})')
    s.stop()
    # Bad TLS files are refused by srv_open with a message.
    bad = Server('--tls-cert', cert, '--tls-key', cert, expect_fail=True)
    rc = bad.proc.wait(timeout=30)
    check(rc == 2 and 'TLS key' in bad.output(), f'a certificate given as key is refused: {bad.output().strip()}')
    bad = Server('--tls-cert', cert, expect_fail=True)
    rc = bad.proc.wait(timeout=30)
    check(rc == 2 and 'both a certificate and a key' in bad.output(), 'a certificate without a key is refused')
    other_cert = os.path.join(TMP, 'other.pem')
    other_key = os.path.join(TMP, 'other.key')
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
                    '-days', '1', '-subj', '/CN=x', '-keyout', other_key, '-out', other_cert], check=True, capture_output=True)
    bad = Server('--tls-cert', cert, '--tls-key', other_key, expect_fail=True)
    rc = bad.proc.wait(timeout=30)
    check(rc == 2 and 'does not match' in bad.output(), 'a key of another certificate is refused')


def case_auth():
    tok = 'tOk3n-' + ''.join(random.choice('abcdefghijklmnop0123456789') for _ in range(26))
    # Refusals at srv_open.
    bad = Server('--listen', '0.0.0.0:0', expect_fail=True)
    rc = bad.proc.wait(timeout=30)
    check(rc == 2 and 'not loopback: a bearer token is required' in bad.output(),
          f'non-loopback without token refused: {bad.output().strip()}')
    bad = Server('--listen', '[::]:0', expect_fail=True)
    check(bad.proc.wait(timeout=30) == 2, 'IPv6 any-address without token refused')
    bad = Server('--token-file', write_token('short'), expect_fail=True)
    rc = bad.proc.wait(timeout=30)
    check(rc == 2 and 'at least 16' in bad.output(), 'short token refused')
    bad = Server('--token-file', os.path.join(TMP, 'missing'), expect_fail=True)
    rc = bad.proc.wait(timeout=30)
    check(rc == 2 and 'No such file' in bad.output(), 'missing token file refused with the reason')

    s = Server('--listen', '0.0.0.0:0', '--token-file', write_token(tok), token=tok)
    st, h, b = raw_get(s.port, '/inline')
    check(st == 401 and 'Bearer realm="podcap"' in h.get('www-authenticate', '') and is_json_error(b, 401),
          'no token: 401 with WWW-Authenticate: Bearer')
    st, h, b = raw_get(s.port, '/inline', {'Authorization': 'Bearer wrong-token-xxxxxxxxxxxxx'})
    check(st == 401 and 'invalid_token' in h.get('www-authenticate', ''), 'wrong token: 401 invalid_token')
    for variant in [tok[:-1], tok + 'x', tok.upper(), 'Basic ' + tok]:
        st, h, b = raw_get(s.port, '/worker', {'Authorization': variant if variant.startswith('Basic') else 'Bearer ' + variant})
        check(st == 401, f'token variant refused ({variant[:10]}...)')
    st, h, b = raw_get(s.port, '/inline', {'Authorization': 'Bearer ' + tok})
    check(st == 200, 'right token: 200')
    st, h, b = raw_get(s.port, '/worker', {'Authorization': 'bearer   ' + tok + ' '})
    check(st == 200, 'scheme case-insensitive, blanks around the token ignored')
    st, h, b = raw_get(s.port, '/public')
    check(st == 200, 'SRV_PUBLIC route needs no token')
    st, h, b = raw_get(s.port, '/ui/')
    check(st == 200, 'static assets need no token')
    st, h, b = raw_get(s.port, '/no/such/path')
    check(st == 401, 'unknown path without token: 401, not 404 (no probing)')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/inline'))
    check(st == 401, 'h2c without token: 401')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', s.url('/inline'), token=tok)
    check(st == 200, 'h2c with token: 200')
    stats = s.stats()
    check(stats['rejected_auth'] >= 8, f'401s counted ({stats["rejected_auth"]})')
    s.stop()


def raw_get(port, path, headers=None, method='GET'):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=30)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    b = r.read()
    h = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, h, b


def case_hostile():
    s = Server()
    port = s.port
    cases = [
        ('malformed request line', b'GARBAGE\r\n\r\n', 400),
        ('header without colon', b'GET /inline HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n', 400),
        ('NUL in request line', b'GET /inl\x00ine HTTP/1.1\r\nHost: x\r\n\r\n', 400),
        ('bad version', b'GET /inline HTTP/9.Z\r\nHost: x\r\n\r\n', 400),
        ('bad content-length', b'POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n', 400),
        ('unknown transfer-encoding', b'POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n', 400),
        ('asterisk target', b'GET * HTTP/1.1\r\nHost: x\r\n\r\n', 400),
        ('URL over the limit', b'GET /echo/' + b'a' * 9000 + b' HTTP/1.1\r\nHost: x\r\n\r\n', 414),
        ('headers over the limit', b'GET /inline HTTP/1.1\r\nHost: x\r\n' +
         b''.join(b'X-H%d: %s\r\n' % (i, b'v' * 500) for i in range(40)) + b'\r\n', 431),
        ('200 headers (over the parser limit)', b'GET /inline HTTP/1.1\r\nHost: x\r\n' +
         b''.join(b'X-%d: v\r\n' % i for i in range(200)) + b'\r\n', 400),
        ('request head over 400 KB', b'GET /inline HTTP/1.1\r\nHost: x\r\nX-Big: ' + b'v' * 500000 + b'\r\n\r\n', 400),
        ('body over the limit (Content-Length)', b'POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n', 413),
        ('chunked body over the limit', b'POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n' +
         b'8000\r\n' + b'z' * 0x8000 + b'\r\n' + b'8000\r\n' + b'z' * 0x8000 + b'\r\n' + b'10\r\n' + b'z' * 16 + b'\r\n0\r\n\r\n', 413),
        ('broken chunked body', b'POST /body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 400),
    ]
    for name, data, want in cases:
        resp = raw(port, data, shut_write=False, read_timeout=15)
        st = status_of(resp)
        ok = st == want
        if want in (413, 414, 431):
            body = resp.split(b'\r\n\r\n', 1)[1] if b'\r\n\r\n' in resp else b''
            ok = ok and is_json_error(body, want)
        check(ok, f'{name}: {want} (got {st}: {resp[:80]!r})')
    random.seed(1)
    for i in range(20):
        junk = bytes(random.getrandbits(8) for _ in range(random.randint(1, 3000)))
        raw(port, junk, read_timeout=3, shut_write=True)
    check(True, '20 connections of random bytes handled')
    # HTTP/2 preface followed by garbage frames.
    raw(port, b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + os.urandom(500), read_timeout=5)
    raw(port, b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + b'\x00\x00\x00\x04\x00\x00\x00\x00\x00' +
        b'\xff\xff\xff\x01\x05\x00\x00\x00\x01', read_timeout=5)
    check(True, 'h2 preface with garbage frames handled')
    st, h, b = s.get('/inline')
    check(st == 200, 'the server still answers after hostile input')
    rc, st2, ver, h, b = curl('--http2-prior-knowledge', s.url('/echo/1'))
    check(st2 == 200, 'h2c still answers after hostile input')
    stats = s.stats()
    check(stats['rejected_url'] >= 1 and stats['rejected_header'] >= 1 and stats['rejected_body'] >= 2,
          'rejections counted by limit')
    s.stop()


def case_slowloris():
    s = Server('--request-timeout-ms', '1500')
    # Headers byte by byte: the connection is closed long before all bytes are out.
    req = b'GET /inline HTTP/1.1\r\nHost: x\r\n' + b''.join(b'X-Slow-%d: %s\r\n' % (i, b'v' * 20) for i in range(20)) + b'\r\n'
    socks = []
    for i in range(20):
        c = socket.create_connection(('127.0.0.1', s.port), timeout=30)
        socks.append(c)
    closed = [False] * len(socks)
    sent = 0
    deadline = time.monotonic() + 60
    while not all(closed) and sent < len(req) and time.monotonic() < deadline:
        for i, c in enumerate(socks):
            if closed[i]:
                continue
            try:
                c.send(req[sent:sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                closed[i] = True
        sent += 1
        # Meanwhile, a normal client is served.
        if sent == 5:
            st, _, _ = s.get('/inline')
            check(st == 200, 'a normal request is served while 20 slowloris clients trickle')
        time.sleep(0.2)
        for i, c in enumerate(socks):
            if closed[i]:
                continue
            c.setblocking(False)
            try:
                if c.recv(1024) == b'':
                    closed[i] = True
            except BlockingIOError:
                pass
            except (ConnectionResetError, OSError):
                closed[i] = True
            c.setblocking(True)
    check(all(closed) and sent < len(req), f'slowloris connections closed by the server after {sent} of {len(req)} bytes')
    for c in socks:
        c.close()
    # An idle connection that never sends anything, and an idle keep-alive connection.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=30)
    check(c.recv(10) == b'', 'an idle connection is closed')
    c.close()
    c = socket.create_connection(('127.0.0.1', s.port), timeout=30)
    c.sendall(b'GET /inline HTTP/1.1\r\nHost: x\r\n\r\n')
    data = b''
    while True:
        b = c.recv(4096)
        if not b:
            break
        data += b
    check(status_of(data) == 200, 'keep-alive connection answered, then closed when idle')
    c.close()
    # A body sent byte by byte.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=30)
    c.sendall(b'POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n')
    n = 0
    try:
        for n in range(200):
            c.send(b'x')
            time.sleep(0.2)
    except (BrokenPipeError, ConnectionResetError):
        pass
    check(n < 199, f'slow body cut after {n} bytes')
    c.close()
    stats = s.stats()
    check(stats['timeouts_request'] >= 22, f'request timeouts counted ({stats["timeouts_request"]})')
    s.stop()


def case_limits():
    # Connection limit.
    s = Server('--max-connections', '10')
    socks = [socket.create_connection(('127.0.0.1', s.port), timeout=10) for _ in range(10)]
    time.sleep(0.3)
    extra = socket.create_connection(('127.0.0.1', s.port), timeout=10)
    try:
        r = extra.recv(10)
    except ConnectionResetError:
        r = b''
    check(r == b'', 'connection over max_connections closed at once')
    extra.close()
    for c in socks:
        c.close()
    ok = False
    for _ in range(50):
        try:
            st, _, _ = s.get('/inline')
            ok = st == 200
            break
        except (ConnectionError, http.client.HTTPException):
            time.sleep(0.1)
    check(ok, 'served again once connections closed')
    stats = s.stats()
    check(stats['connections_rejected'] >= 1, f'rejected connection counted ({stats["connections_rejected"]})')
    s.stop()

    # Concurrency class: two exports at once, the third gets 429.
    s = Server('--queue-bytes', '65536')
    hogs = []
    for _ in range(2):
        c = socket.create_connection(('127.0.0.1', s.port), timeout=10)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.sendall(b'GET /big?mb=100 HTTP/1.1\r\nHost: x\r\n\r\n')
        hogs.append(c)
    s.wait_stat(lambda st: st['requests_active'] >= 3, 'two exports in progress')
    st, h, b = s.get('/big?mb=1')
    check(st == 429 and h.get('retry-after') == '3' and is_json_error(b, 429), f'third export: 429 Retry-After 3 ({st})')
    for c in hogs:
        c.close()
    s.wait_stat(lambda st: st['big_failed'] >= 2, 'writers of the closed exports saw an error')
    st, h, b = s.get('/big?mb=1')
    check(st == 200 and len(b) == 1 << 20, 'export slots free again')
    s.stop()

    # Worker queue: one worker, two queued, the rest 503.
    s = Server('--workers', '1', '--max-queued', '2')
    results = []

    def one():
        try:
            st, h, _ = raw_get(s.port, '/sleep?ms=1500')
            results.append((st, h.get('retry-after')))
        except Exception as e:
            results.append((str(e), None))
    ts = [threading.Thread(target=one) for _ in range(6)]
    for t in ts:
        t.start()
        time.sleep(0.05)
    for t in ts:
        t.join()
    codes = sorted(r[0] for r in results if isinstance(r[0], int))
    check(codes.count(503) >= 1 and codes.count(200) >= 3, f'queue full: 503 with Retry-After ({codes})')
    check(all(r[1] == '1' for r in results if r[0] == 503), '503 carries Retry-After: 1')
    s.stop()

    # Body and header limits set lower, and the write timeout.
    s = Server('--max-body', '1000', '--max-header', '2000', '--max-url', '300', '--write-timeout-ms', '1500')
    st, _, b = s.get('/body', method='POST', body=b'x' * 1000)
    check(st == 200, 'body at the limit accepted')
    st, _, b = s.get('/body', method='POST', body=b'x' * 1001)
    check(st == 413 and is_json_error(b, 413), 'body one byte over the limit: 413 JSON')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', '--data-binary', 'x' * 1001, s.url('/body'))
    check(st != 200, f'h2c body over the limit refused (curl rc {rc}, status {st})')
    st, _, b = s.get('/echo/1', headers={'X-Big': 'v' * 2100})
    check(st == 431 and is_json_error(b, 431), 'header over a 2000-byte limit: 431')
    st, _, b = s.get('/echo/' + 'a' * 300)
    check(st == 414 and is_json_error(b, 414), 'URL over a 300-byte limit: 414')
    c = socket.create_connection(('127.0.0.1', s.port), timeout=10)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(b'GET /big?mb=200 HTTP/1.1\r\nHost: x\r\n\r\n')
    s.wait_stat(lambda st: st['timeouts_write'] >= 1 and st['big_failed'] >= 1 and st['big_last_err'] == -110,
                'a client that reads nothing is cut by the write timeout (writer: -ETIMEDOUT)')
    c.close()
    s.stop()


def case_disconnect():
    s = Server()
    # HTTP/1.1: read 1 MB of a large export, then go away.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=10)
    c.sendall(b'GET /big?mb=1000 HTTP/1.1\r\nHost: x\r\n\r\n')
    got = 0
    while got < 1 << 20:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
    c.close()
    s.wait_stat(lambda st: st['big_failed'] >= 1 and st['big_last_err'] == -32,
                'HTTP/1.1 client gone mid-stream: the writer got -EPIPE')
    st, _, _ = s.get('/inline')
    check(st == 200, 'others are still served')
    # h2: curl gives up after a moment of a slow read.
    rc, st, ver, h, b = curl('--http2-prior-knowledge', '--limit-rate', '2M', '--max-time', '1', s.url('/big?mb=1000'))
    check(rc == 28, f'h2 client gave up (curl rc {rc})')
    s.wait_stat(lambda st: st['big_failed'] >= 2 and st['big_last_err'] == -32, 'h2 client gone: the writer got -EPIPE')
    # A slow producer whose client leaves.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=10)
    c.sendall(b'GET /slow?lines=1000&ms=20 HTTP/1.1\r\nHost: x\r\n\r\n')
    c.recv(100)
    c.close()
    s.wait_stat(lambda st: st['slow_failed'] >= 1, 'slow producer learns its client left')
    # A whole answer whose client leaves before reading it.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=10)
    c.sendall(b'GET /whole?kb=50000 HTTP/1.1\r\nHost: x\r\n\r\n')
    c.recv(100)
    c.close()
    s.wait_stat(lambda st: st['requests_active'] == 1, 'no request left behind (only /stats itself is active)')
    stats = s.stop()
    check(stats is not None and stats['requests_active'] == 0 and stats['connections_active'] == 0,
          'after stop: no active request or connection')


def case_live():
    s = Server('--workers', '1')
    rc, st, ver, h, b = curl('-N', s.url('/live?n=20&ms=5'))
    lines = b.split(b'\n')[:-1]
    check(rc == 0 and len(lines) == 20 and lines[19].startswith(b'event 19 '), 'detached stream: 20 events then a clean end')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', '-N', s.url('/live?n=10&ms=5'))
    check(rc == 0 and b.count(b'\n') == 10, 'detached stream over h2c')
    rc, st, ver, h, b = curl('-N', s.url('/live-inline?n=7&ms=5'))
    check(rc == 0 and b.count(b'\n') == 7, 'stream detached by an inline handler')
    # A client that reads nothing while the producer bursts: drops, and no worker held.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=10)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    c.sendall(b'GET /live?burst=100&size=4096&ms=5 HTTP/1.1\r\nHost: x\r\n\r\n')
    s.wait_stat(lambda st: st['live_drops'] > 0 and st['stream_again'] > 0, 'non-blocking writes to a full queue: -EAGAIN counted as drops')
    st, _, _ = s.get('/worker')
    check(st == 200, 'the single worker is free while the live stream runs')
    c.close()
    s.wait_stat(lambda st: st['live_gone'] >= 1 and st['live_closed_cb'] >= 4, 'producer learns the client left; on_close ran')
    stats = s.stats()
    check(stats['live_started'] == 4 and stats['live_ended'] == 3, f'live streams accounted {stats["live_started"]}/{stats["live_ended"]}')
    s.stop()


def case_concurrency():
    s = Server('--workers', '4')
    errors = []
    counts = {'ok': 0}
    lock = threading.Lock()

    def client(i):
        try:
            c = http.client.HTTPConnection('127.0.0.1', s.port, timeout=120)
            for k in range(5):
                path = ['/inline', '/worker', f'/echo/{i}-{k}?n={k}', '/whole?kb=64', '/slow?lines=2&ms=10'][(i + k) % 5]
                c.request('GET', path)
                r = c.getresponse()
                body = r.read()
                if r.status != 200:
                    raise RuntimeError(f'{path}: {r.status}')
                if path.startswith('/echo') and json.loads(body)['id'] != f'{i}-{k}':
                    raise RuntimeError('echo mismatch')
                if path.startswith('/whole') and body != pattern(64 << 10):
                    raise RuntimeError('whole mismatch')
                with lock:
                    counts['ok'] += 1
            c.close()
        except Exception as e:
            with lock:
                errors.append(f'{i}: {e}')
    ts = [threading.Thread(target=client, args=(i,)) for i in range(200)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    check(not errors and counts['ok'] == 1000, f'200 concurrent clients x 5 requests ({counts["ok"]} ok, errors {errors[:3]})')
    stats = s.stats()
    check(stats['connections_accepted'] >= 200, f'{stats["connections_accepted"]} connections accepted')
    s.stop()


def case_stop():
    s = Server('--stop-grace-ms', '3000')
    live_out = os.path.join(TMP, 'live.out')
    live = subprocess.Popen(['curl', '-s', '-N', s.url('/live?ms=50'), '-o', live_out])
    big = subprocess.Popen(['curl', '-s', '--limit-rate', '5M', '-o', '/dev/null', s.url('/big?mb=1000')])
    slow = subprocess.Popen(['curl', '-s', '-o', os.path.join(TMP, 'sleep.out'), s.url('/sleep?ms=500')])
    idle = http.client.HTTPConnection('127.0.0.1', s.port, timeout=30)
    idle.request('GET', '/inline')
    idle.getresponse().read()
    s.wait_stat(lambda st: st['live_started'] >= 1 and st['requests_active'] >= 4, 'streams in progress before the stop')
    stats = s.stop()
    live_rc = live.wait(timeout=30)
    big_rc = big.wait(timeout=30)
    slow_rc = slow.wait(timeout=30)
    check(live_rc == 0 and os.path.getsize(live_out) > 0, 'live stream ended cleanly by the stop')
    check(big_rc != 0, f'an export cut by the stop looks incomplete to its client (curl rc {big_rc})')
    check(slow_rc == 0 and open(os.path.join(TMP, 'sleep.out')).read().startswith('{"slept"'),
          'a handler in progress still answered during the stop')
    check(stats is not None and stats['big_last_err'] == -108, 'the export writer saw -ESHUTDOWN')
    idle.sock.settimeout(5)
    try:
        closed = idle.sock.recv(10) == b''
    except OSError:
        closed = True
    check(closed, 'idle keep-alive connection closed by the stop')


def case_memory():
    s = Server()
    before = s.pid_hwm_kb()
    # 100 MiB read slowly: about 30 MB/s, well below what the producer could write.
    c = socket.create_connection(('127.0.0.1', s.port), timeout=30)
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    c.sendall(b'GET /big?mb=100 HTTP/1.1\r\nHost: x\r\n\r\n')
    got = 0
    t0 = time.monotonic()
    while True:
        b = c.recv(65536)
        if not b:
            break
        got += len(b)
        if b.endswith(b'0\r\n\r\n') and got > 100 << 20:
            break
        time.sleep(0.002)
    c.close()
    t1 = time.monotonic()
    after = s.pid_hwm_kb()
    print(f'memory: 100 MiB over HTTP/1.1 read at {got / (t1 - t0) / 1e6:.1f} MB/s: '
          f'VmHWM {before} kB before, {after} kB after (+{after - before} kB)', flush=True)
    check(got > 100 << 20, f'all of the 100 MiB arrived ({got} bytes with chunk framing)')
    sanitized = s.stats()['sanitized']
    if sanitized:
        print('memory: ASan build (its quarantine holds freed memory): VmHWM reported, not checked')
    check(sanitized or after - before < 32 * 1024, 'server memory stays flat (VmHWM grows < 32 MiB for a 100 MiB answer)')
    rc, st, ver, h, b = curl('--http2-prior-knowledge', '--limit-rate', '40M', '-o', '/dev/null', s.url('/big?mb=100'))
    after2 = s.pid_hwm_kb()
    print(f'memory: 100 MiB over h2c at 40 MB/s: VmHWM {after2} kB (+{after2 - before} kB from the start)', flush=True)
    check(rc == 0 and (sanitized or after2 - before < 32 * 1024), 'h2c: memory stays flat too')
    s.stop()


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith('case_')}


def main():
    global BIN, TMP
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        sys.exit(f'usage: srv_test.py SRV_TEST {{{"|".join(CASES)}}}')
    BIN = sys.argv[1]
    # The same LeakSanitizer suppressions as under meson, when run by hand.
    supp = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'server', 'lsan.supp')
    os.environ.setdefault('LSAN_OPTIONS', 'suppressions=' + os.path.normpath(supp))
    if subprocess.run(['curl', '--version'], capture_output=True).returncode != 0:
        print('curl missing: skipped')
        sys.exit(77)
    with tempfile.TemporaryDirectory(prefix='srv-test-') as d:
        TMP = d
        make_cert()
        try:
            CASES[sys.argv[2]]()
        except Exception:
            FAILS.append('exception')
            raise
        finally:
            for srv in SERVERS:
                if srv.proc.poll() is None:
                    srv.proc.kill()
                    srv.proc.wait()
            if FAILS:
                for srv in SERVERS:
                    print(f'--- server log ({" ".join(srv.proc.args[1:])}):')
                    print(srv.output()[-6000:])
    if FAILS:
        print(f'{len(FAILS)} failed checks:')
        for f in FAILS:
            print('  ' + f)
        sys.exit(1)
    print('all checks passed')


if __name__ == '__main__':
    main()
