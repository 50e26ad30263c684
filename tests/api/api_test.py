#!/usr/bin/python3
"""The query API over the wire (docs/api.md), against `podcap serve` on a fixture
database (tests/api/mkfixture.py, read with `podcap read --store`), and, as root,
against the agent (`podcap run --listen`) capturing in a network namespace.

usage: api_test.py PODCAP CASE

Each case starts its own server on an ephemeral port and stops it with SIGTERM; it
must exit 0 (under the ASan build LeakSanitizer turns a leak into a failure).
Waits are bounded polls, never timing assertions.
"""
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

PODCAP = None
TMP = None
HERE = os.path.dirname(os.path.abspath(__file__))
FAILS = []
PROCS = []


def check(cond, what):
    print(('ok: ' if cond else 'FAIL: ') + what, flush=True)
    if not cond:
        FAILS.append(what)
    return cond


def skip(why):
    print('SKIP: ' + why, flush=True)
    sys.exit(77)


def sha(path):
    with open(path, 'rb') as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---- servers --------------------------------------------------------------

class Server:
    """podcap serve (or run) on port 0; the port comes from its first line."""

    def __init__(self, args, pattern=r'listening on https?://[^:]+:(\d+)/', timeout=30, env=None):
        self.log = open(os.path.join(TMP, 'server-%d.log' % len(PROCS)), 'w+')
        self.p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env)
        PROCS.append(self)
        self.port = None
        self.lines = []
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.p.stdout.readline()
            if not line:
                break
            self.lines.append(line)
            m = re.search(pattern, line)
            if m:
                self.port = int(m.group(1))
                break
        if not self.port:
            self.log.seek(0)
            raise RuntimeError('server did not start: %s %s' % (''.join(self.lines), self.log.read()))
        # keep draining stdout so the process never blocks on a full pipe
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self):
        for line in self.p.stdout:
            self.lines.append(line)

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
        try:
            rc = self.p.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.log.seek(0)
        err = self.log.read()
        if not check(rc == 0, 'server exits 0 after SIGTERM (rc %s)' % rc):
            print(err[-4000:])
        PROCS.remove(self)
        return err


def get(port, path, params=None, headers=None, method='GET'):
    """(status, headers dict (lower-case), body bytes)"""
    if params:
        path += '?' + urllib.parse.urlencode(params)
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=60)
    c.request(method, path, headers=headers or {})
    r = c.getresponse()
    body = r.read()
    h = {k.lower(): v for k, v in r.getheaders()}
    c.close()
    return r.status, h, body


def get_json(port, path, params=None, headers=None):
    st, h, body = get(port, path, params, headers)
    try:
        return st, json.loads(body)
    except ValueError:
        return st, {'_raw': body[:200]}


def fixture(name='f', n=40, store=True):
    """A database (and packet store) read from the fixture captures."""
    d = os.path.join(TMP, name)
    os.makedirs(d, exist_ok=True)
    subprocess.run(['/usr/bin/python3', os.path.join(HERE, 'mkfixture.py'), d, str(n)], check=True)
    db = os.path.join(d, 'flows.db')
    args = [PODCAP, 'read', os.path.join(d, 'veth.pcap'), os.path.join(d, 'underlay.pcap'), '--db', db, '-q']
    if store:
        args += ['--store', os.path.join(d, 'store')]
    subprocess.run(args, check=True)
    return db


def serve(db, *extra):
    return Server([PODCAP, 'serve', '--db', db, '--listen', '127.0.0.1:0'] + list(extra))


def all_ids(db, filt=None):
    args = [PODCAP, 'flows', '--db', db, '--ndjson', '--limit', '0']
    if filt:
        args.append(filt)
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return [json.loads(l)['id'] for l in out.splitlines() if l.strip()]


# ---- cases ----------------------------------------------------------------

def case_flows():
    db = fixture()
    ids = all_ids(db)
    s = serve(db)
    st, j = get_json(s.port, '/api/v1/flows')
    check(st == 200, 'GET /api/v1/flows: 200')
    check(len(j['flows']) == min(100, len(ids)), 'default limit 100 (or all %d)' % len(ids))
    check([f['id'] for f in j['flows']] == sorted(ids, key=int, reverse=True)[:100], 'default order -id')
    check(j['complete'] is True and j['incomplete_because'] == [], 'complete with no reasons')
    check(isinstance(j['oldest_us'], int) and j['oldest_us'] > 0, 'oldest_us given')
    check(all(isinstance(f['id'], str) for f in j['flows']), 'ids are strings')
    check(all('iface' in f and 'community_id' in f and 'packets_state' in f for f in j['flows']),
          'flow objects carry iface, community_id, packets_state')
    # the filter language, as the CLI has it
    for filt in ['app == TLS', 'dport == 53', 'src == 10.244.1.10 and dport == 80', 'retrans > 0',
                 'host == "tls-*.example.com"', 'tunnel == vxlan and vni == 42', 'not app == DNS',
                 'iface == "veth.pcap"']:
        st, j = get_json(s.port, '/api/v1/flows', {'filter': filt, 'limit': 10000})
        want = all_ids(db, filt)
        check(st == 200 and sorted(f['id'] for f in j['flows']) == sorted(want),
              'filter %r: the rows `podcap flows` lists (%d)' % (filt, len(want)))
        check(j.get('filter'), 'filter %r: normalised filter echoed (%r)' % (filt, j.get('filter')))
    # orders
    for order, key, rev in [('id', lambda f: int(f['id']), False), ('-last', lambda f: (f['last_us'], int(f['id'])), True),
                            ('first', lambda f: (f['first_us'], int(f['id'])), False),
                            ('-bytes', lambda f: (f['c2s_bytes'] + f['s2c_bytes'], int(f['id'])), True)]:
        st, j = get_json(s.port, '/api/v1/flows', {'order': order, 'limit': 10000})
        got = j['flows']
        check(st == 200 and got == sorted(got, key=key, reverse=rev) and len(got) == len(ids),
              'order %s sorts every flow' % order)
    # formats
    st, h, body = get(s.port, '/api/v1/flows', {'format': 'ndjson', 'limit': 5})
    lines = body.decode().splitlines()
    last = json.loads(lines[-1])
    check(st == 200 and h['content-type'].startswith('application/x-ndjson') and len(lines) == 6,
          'ndjson: 5 flows and a last line')
    check(last.get('next_cursor') and last.get('complete') is True, 'ndjson last line: next_cursor, complete')
    st, h, body = get(s.port, '/api/v1/flows', {'format': 'csv', 'limit': 5})
    rows = body.decode().splitlines()
    check(st == 200 and rows[0].startswith('id,obs_id') and len(rows) == 6 and h.get('x-next-cursor'),
          'csv: header, 5 rows, X-Next-Cursor')
    st, h, body = get(s.port, '/api/v1/flows', {'format': 'table', 'limit': 3})
    local = subprocess.run([PODCAP, 'flows', '--db', db, '--limit', '3'], capture_output=True).stdout
    st2, h2, body2 = get(s.port, '/api/v1/flows', {'format': 'table', 'limit': 3, 'order': '-last'})
    check(st == 200 and body2 == local, 'format=table order=-last: the bytes `podcap flows` prints')
    # bad parameters: 400 with a message
    for params, what in [({'limit': 0}, 'limit 0'), ({'limit': 10001}, 'limit 10001'), ({'limit': '5x'}, 'limit 5x'),
                         ({'limit': ' 5'}, 'limit " 5"'), ({'order': 'sideways'}, 'unknown order'),
                         ({'format': 'xml'}, 'unknown format'), ({'cursor': 'garbage'}, 'bad cursor'),
                         ({'cursor': 'id:0:5'}, 'cursor of another order'), ({'from': 'yesterday'}, 'bad from'),
                         ({'from': 'now', 'to': '-1h'}, 'from after to')]:
        st, j = get_json(s.port, '/api/v1/flows', params)
        check(st == 400 and j.get('status') == 400 and j.get('error'), '400 for %s: %s' % (what, j.get('error')))
    # from/to
    st, j = get_json(s.port, '/api/v1/flows', {'from': '2030-01-01T00:00:00Z'})
    check(st == 200 and j['flows'] == [], 'a range after the data: no rows')
    st, j = get_json(s.port, '/api/v1/flows', {'from': '2024-11-29T06:00:00Z', 'to': '2024-11-29T06:00:00.01Z',
                                               'limit': 10000})
    check(st == 200 and 0 < len(j['flows']) < len(ids), 'a range inside the data: some rows (%d)' % len(j['flows']))
    s.stop()


def case_pages():
    """Keyset pages: every flow once, in order, also while flows arrive."""
    db = fixture(n=60)
    ids = all_ids(db)
    s = serve(db)
    for order in ['-id', 'id', '-last', 'first', '-packets']:
        seen, cursor, pages = [], None, 0
        while pages < 1000:
            p = {'order': order, 'limit': 7}
            if cursor:
                p['cursor'] = cursor
            st, j = get_json(s.port, '/api/v1/flows', p)
            if st != 200:
                break
            seen += [f['id'] for f in j['flows']]
            pages += 1
            cursor = j['next_cursor']
            if not cursor:
                break
        check(sorted(seen, key=int) == sorted(ids, key=int) and len(set(seen)) == len(seen),
              'order %s: %d pages of 7 give every flow once (%d)' % (order, pages, len(seen)))
    # new flows arrive between pages: with -id they never shift what follows
    st, j = get_json(s.port, '/api/v1/flows', {'limit': 10})
    first = [f['id'] for f in j['flows']]
    cursor = j['next_cursor']
    d = os.path.join(TMP, 'more')
    os.makedirs(d, exist_ok=True)
    subprocess.run(['/usr/bin/python3', os.path.join(HERE, 'mkfixture.py'), d, '12'], check=True)
    subprocess.run([PODCAP, 'read', os.path.join(d, 'veth.pcap'), '--db', db, '-q'], check=True)
    now = all_ids(db)
    check(len(now) > len(ids), 'a writer added %d flows meanwhile' % (len(now) - len(ids)))
    seen = list(first)
    while cursor:
        st, j = get_json(s.port, '/api/v1/flows', {'limit': 10, 'cursor': cursor})
        seen += [f['id'] for f in j['flows']]
        cursor = j['next_cursor']
    check(sorted(seen, key=int) == sorted(ids, key=int) and len(set(seen)) == len(seen),
          'paging on while flows arrive: the flows of the first page\'s time, each once')
    st, j = get_json(s.port, '/api/v1/flows', {'limit': 1})
    check(int(j['flows'][0]['id']) == max(map(int, now)), 'a new first page starts with the newest flow')
    # polling for new flows: order=id after the newest id known
    st, j = get_json(s.port, '/api/v1/flows', {'order': 'id', 'cursor': 'id:0:%s' % max(ids, key=int),
                                               'limit': 10000})
    check(sorted(f['id'] for f in j['flows']) == sorted(set(now) - set(ids)),
          'order=id with a cursor at the last known id gives exactly the new flows')
    s.stop()


def case_detail():
    db = fixture()
    s = serve(db)
    st, j = get_json(s.port, '/api/v1/flows', {'filter': 'app == TLS and iface == "veth.pcap"', 'limit': 1})
    fid = j['flows'][0]['id']
    st, j = get_json(s.port, '/api/v1/flows/' + fid)
    check(st == 200 and j['flow']['id'] == fid, 'GET /api/v1/flows/{id}: the flow')
    rel = j['related']
    check(len(rel) == 1 and rel[0]['community_id'] == j['flow']['community_id'] and rel[0]['iface'] == 'underlay.pcap'
          and rel[0]['tunnel'] == 'vxlan' and rel[0]['vni'] == 42 and j.get('related_complete') is True,
          'related: the same connection on the underlay (VXLAN 42), same Community ID')
    st, j = get_json(s.port, '/api/v1/flows/' + rel[0]['id'])
    check(st == 200 and [r['id'] for r in j['related']] == [fid], 'and back')
    for bad, code in [('999999', 404), ('abc', 400), ('-1', 400), ('18446744073709551616', 400), ('1e3', 400)]:
        st, j = get_json(s.port, '/api/v1/flows/' + bad)
        check(st == code and j.get('error'), 'flow %s: %d (%s)' % (bad, code, j.get('error')))
    s.stop()


def case_pcap():
    db = fixture()
    s = serve(db)
    ids = all_ids(db)
    same = 0
    for fid in ids[::7]:
        st, h, body = get(s.port, '/api/v1/flows/%s/pcap' % fid)
        local = subprocess.run([PODCAP, 'export', '--db', db, '--flow', fid, '-w', '-'], capture_output=True).stdout
        same += st == 200 and body == local and len(body) > 0
    check(same == len(ids[::7]), '/flows/{id}/pcap byte-identical to `podcap export --flow ID -w -` (%d flows)' % same)
    st, h, body = get(s.port, '/api/v1/flows/%s/pcap' % ids[0])
    check(h.get('content-type') == 'application/x-pcapng' and
          h.get('content-disposition') == 'attachment; filename="podcap-flow-%s.pcapng"' % ids[0],
          'content type and file name')
    out = os.path.join(TMP, 'q.pcapng')
    st, h, body = get(s.port, '/api/v1/pcap', {'filter': 'app == DNS and iface == "veth.pcap"'})
    open(out, 'wb').write(body)
    r = subprocess.run(['tshark', '-r', out, '-Y', 'dns', '-T', 'fields', '-e', 'dns.qry.name'],
                       capture_output=True, text=True)
    names = set(r.stdout.split())
    check(st == 200 and r.returncode == 0 and len(names) == 40 and all('svc' in n for n in names),
          '/api/v1/pcap?filter=: tshark reads the DNS queries of all 40 flows')
    r = subprocess.run(['tshark', '-r', out, '-T', 'fields', '-e', 'frame.comment'], capture_output=True, text=True)
    check(all(l.startswith('1:') for l in r.stdout.split()), 'each packet commented with its Community ID')
    st, h, body = get(s.port, '/api/v1/pcap', {'filter': 'app == DNS', 'format': 'pcap', 'limit': 3})
    open(out, 'wb').write(body)
    r = subprocess.run(['capinfos', '-t', '-c', out], capture_output=True, text=True)
    check(st == 200 and 'pcap' in r.stdout and 'Number of packets:   6' in r.stdout,
          'format=pcap, limit=3: a pcap file with the 6 packets of 3 flows')
    # the limit says so: X-Podcap-Complete (the answer began before a trailer could)
    hs = h
    st, j = get_json(s.port, '/api/v1/stats')
    check(hs.get('x-podcap-complete') == 'false' and hs.get('x-podcap-flows') == '3' and
          hs.get('x-podcap-incomplete-because') == 'limit' and j.get('exports', {}).get('limited') == 1,
          'limit=3 of more: X-Podcap-Complete: false, X-Podcap-Flows: 3, because limit; stats exports.limited')
    st, h, body = get(s.port, '/api/v1/pcap', {'filter': 'app == DNS and iface == "veth.pcap"'})
    check(h.get('x-podcap-complete') == 'true' and h.get('x-podcap-flows') == '40', 'all 40: X-Podcap-Complete: true')
    for path, params, code in [('/api/v1/flows/424242/pcap', None, 404), ('/api/v1/flows/x/pcap', None, 400),
                               ('/api/v1/pcap', {'filter': 'dport =='}, 400),
                               ('/api/v1/pcap', {'format': 'bmp'}, 400),
                               ('/api/v1/flows/%s/pcap' % ids[0], {'format': 'bmp'}, 400)]:
        st, j = get_json(s.port, path, params)
        check(st == code, '%s %s: %d' % (path, params or '', code))
    s.stop()
    # a pcap file cannot hold two link types: known before the first byte, so a
    # JSON error (it was 200 and a cut body)
    d2 = os.path.join(TMP, 'links')
    os.makedirs(d2, exist_ok=True)
    subprocess.run(['/usr/bin/python3', '-c', '''
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, Raw, wrpcap
d = sys.argv[1]
wrpcap(d + "/eth.pcap", [Ether() / IP(src="10.2.0.1", dst="10.2.0.2") / UDP(sport=5, dport=53) / Raw(b"a" * 20)])
wrpcap(d + "/raw.pcap", [IP(src="10.3.0.1", dst="10.3.0.2") / UDP(sport=6, dport=53) / Raw(b"b" * 20)], linktype=101)
''', d2], check=True)
    subprocess.run([PODCAP, 'read', os.path.join(d2, 'eth.pcap'), os.path.join(d2, 'raw.pcap'), '--db',
                    os.path.join(d2, 'f.db'), '--store', os.path.join(d2, 'store'), '-q'], check=True)
    s = serve(os.path.join(d2, 'f.db'))
    st, h, body = get(s.port, '/api/v1/pcap', {'format': 'pcap'})
    j = json.loads(body) if h.get('content-type', '').startswith('application/json') else {'error': repr(body[:40])}
    check(st == 409 and 'different link types' in j.get('error', '') and 'content-disposition' not in h,
          'format=pcap over two link types: %d %s' % (st, j.get('error')))
    st, h, body = get(s.port, '/api/v1/pcap')
    check(st == 200 and len(body) > 100, 'the same flows as pcapng: 200')
    st, j = get_json(s.port, '/api/v1/stats')
    check(j.get('exports', {}).get('failed') == 1, 'stats exports.failed %s' % j.get('exports'))
    s.stop()
    # a damaged packet store: packets it cannot read cut the answer (the CLI says
    # "unreadable" and fails); it was a 200 with a valid, short capture
    d = os.path.join(TMP, 'damaged')
    shutil.rmtree(d, ignore_errors=True)
    shutil.copytree(os.path.join(TMP, 'f', 'store'), d)
    for seg in [os.path.join(d, x) for x in os.listdir(d) if x.endswith('.pcapng')]:
        with open(seg, 'r+b') as f:
            size = os.path.getsize(seg)
            for off in range(4096, size - 64, 2048):
                f.seek(off)
                f.write(b'\xaa' * 48)
    bad = None
    for fid in ids:
        r = subprocess.run([PODCAP, 'export', '--db', db, '--store', d, '--flow', fid, '-w', '-'], capture_output=True, text=True,
                           errors='replace')
        if 'unreadable' in r.stderr:
            bad = fid
            break
    check(bad is not None, 'the damage makes some flow unreadable for podcap export (flow %s)' % bad)
    if bad:
        s = serve(db, '--store', d)
        try:
            st, h, body = get(s.port, '/api/v1/flows/%s/pcap' % bad)
            # nothing readable at all: a JSON error before any byte of a capture
            cut = st == 500 and b'could not read' in body
        except http.client.IncompleteRead:
            cut = True
        st2, j = get_json(s.port, '/api/v1/stats')
        check(cut and j.get('exports', {}).get('damaged') == 1,
              'flow %s with unreadable packets: the answer is cut (or a 500 when none was readable); stats exports %s'
              % (bad, j.get('exports')))
        s.stop()
    # every segment gone: 410 and a JSON error, as podcap export exits 1 (it was a
    # 200 with a capture of no packets)
    for seg in [x for x in os.listdir(d) if x.endswith('.pcapng')]:
        os.unlink(os.path.join(d, seg))
    s = serve(db, '--store', d)
    st, j = get_json(s.port, '/api/v1/flows/%s/pcap' % ids[0])
    st2, j2 = get_json(s.port, '/api/v1/stats')
    check(st == 410 and 'no longer in the packet store' in j.get('error', '') and j2.get('exports', {}).get('missing') == 1,
          'the packets gone: 410 %s; stats exports %s' % (j.get('error'), j2.get('exports')))
    s.stop()
    # a database without a packet store: 409
    db2 = fixture('nostore', n=5, store=False)
    s = serve(db2)
    st, j = get_json(s.port, '/api/v1/flows/1/pcap')
    check(st == 409 and 'packet store' in j.get('error', ''), 'no packet store: 409 (%s)' % j.get('error'))
    st, j = get_json(s.port, '/api/v1/flows', {'limit': 1})
    check(st == 200 and j['flows'], 'listing still works without a store')
    s.stop()


def case_disconnect():
    """A client that leaves in the middle of a big export: the server notices, cuts
    the stream, and keeps answering everyone else."""
    d = os.path.join(TMP, 'big')
    os.makedirs(d, exist_ok=True)
    # one flow of ~40 MB: big enough that the answer cannot sit in socket buffers
    subprocess.run(['/usr/bin/python3', '-c', '''
import sys
from scapy.all import Ether, IP, UDP, Raw, wrpcap, PcapWriter
w = PcapWriter(sys.argv[1], sync=False)
p = Ether()/IP(src="10.1.0.1", dst="10.1.0.2")/UDP(sport=1111, dport=2222)/Raw(b"x" * 1400)
for i in range(30000):
    p.time = 1732860000 + i * 1e-4
    w.write(p)
w.close()
''', os.path.join(d, 'big.pcap')], check=True)
    db = os.path.join(d, 'flows.db')
    subprocess.run([PODCAP, 'read', os.path.join(d, 'big.pcap'), '--db', db, '--store', os.path.join(d, 'st'), '-q'],
                   check=True)
    s = serve(db)
    for i in range(3):
        c = socket.create_connection(('127.0.0.1', s.port))
        c.sendall(b'GET /api/v1/flows/1/pcap HTTP/1.1\r\nHost: x\r\n\r\n')
        got = c.recv(65536)
        c.close()
    check(b'200 OK' in got, 'the export began (HTTP 200) before the client left')
    ok = False
    for _ in range(100):
        st, j = get_json(s.port, '/api/v1/stats')
        if st == 200 and j['server']['streams_cut'] >= 3:
            ok = True
            break
        time.sleep(0.1)
    check(ok, 'three exports cut when their clients left (streams_cut %s)' % j['server']['streams_cut'])
    st, h, body = get(s.port, '/api/v1/flows/1/pcap')
    check(st == 200 and len(body) > 40_000_000, 'the next client gets the whole export (%d bytes)' % len(body))
    st, j = get_json(s.port, '/api/v1/flows')
    check(st == 200 and len(j['flows']) == 1, 'and listings go on')
    s.stop()


def case_top():
    db = fixture()
    s = serve(db)
    st, j = get_json(s.port, '/api/v1/top', {'by': 'app', 'metric': 'flows'})
    rows = {r['key']: r['value'] for r in j['rows']}
    check(st == 200 and rows.get('DNS') == 80 and rows.get('HTTP') == 80 and rows.get('TLS') == 20,
          'top by app, flows: DNS 80, HTTP 80, TLS 20 (%s)' % rows)
    check(j['total'] == 180 and j['other'] == 0, 'total 180, other 0')
    st, j = get_json(s.port, '/api/v1/top', {'by': 'dport', 'metric': 'bytes', 'limit': 2})
    check(st == 200 and len(j['rows']) == 2 and j['other'] > 0 and j['rows'][0]['value'] >= j['rows'][1]['value'],
          'top 2 by dport: largest first, the rest in other')
    st, j = get_json(s.port, '/api/v1/top', {'by': 'iface', 'metric': 'packets', 'filter': 'app == TLS'})
    check(st == 200 and {r['key'] for r in j['rows']} == {'veth.pcap', 'underlay.pcap'}, 'top by iface with a filter')
    st, j = get_json(s.port, '/api/v1/top', {'by': 'app', 'bucket': '1s', 'from': '2024-11-29T05:59:59Z',
                                             'to': '2024-11-29T06:00:02Z'})
    check(st == 200 and j['bucket_us'] == 1000000 and j['buckets'] and
          sum(b['value'] for b in j['buckets']) == sum(r['value'] for r in j['rows']),
          'buckets of 1s: per-bucket values add up to the rows')
    # several keys in one request (one scan): each answer as its key's alone, with
    # its own limit and bucket
    common = {'metric': 'packets', 'from': '2024-11-29T05:59:59Z', 'to': '2024-11-29T06:00:02Z'}
    for flt in [None, 'proto == udp or dport == 443']:
        c = dict(common, **({'filter': flt} if flt else {}))
        st, j = get_json(s.port, '/api/v1/top', dict(c, by='app,src,dst,dport', limit='3,2,5,1', bucket='1s,,2s,'))
        check(st == 200 and j['metric'] == 'packets' and [t['by'] for t in j['tops']] == ['app', 'src', 'dst', 'dport']
              and 'complete' in j, 'top by=app,src,dst,dport: one answer per key, in order (filter %s)' % flt)
        for t, (by, lim, b) in zip(j['tops'], [('app', 3, '1s'), ('src', 2, ''), ('dst', 5, '2s'), ('dport', 1, '')]):
            st1, one = get_json(s.port, '/api/v1/top', dict(c, by=by, limit=lim, bucket=b))
            for k in ['complete', 'oldest_us', 'incomplete_because']:
                one.pop(k, None)
            check(st1 == 200 and t == one and len(t['rows']) <= lim and ('buckets' in t) == bool(b),
                  '  %s: the same as by=%s alone (%d rows, %d buckets)' % (by, by, len(t['rows']),
                                                                          len(t.get('buckets', []))))
    st, j = get_json(s.port, '/api/v1/top', {'by': 'app', 'filter': ' \t '})
    check(st == 200 and j['source'] == 'rollup' and j['total'] > 0, 'a blank filter is none: top by app from the rollup')
    st, j = get_json(s.port, '/api/v1/top', {'by': 'app,pod', 'metric': 'flows', 'limit': 4})
    check(st == 200 and [t['source'] for t in j['tops']] == ['rollup', 'rollup'] and
          all(len(t['rows']) <= 4 for t in j['tops']), 'by=app,pod without a filter: both from the rollup, limit 4 each')
    for params in [{'by': 'app,src', 'limit': '1,2,3'}, {'by': 'app,src', 'bucket': '1s,2s,3s', 'from': '-1h'},
                   {'by': 'app,src,dst,dport,pod,iface,host,category,app'}, {'by': 'app,'},
                   {'by': 'app,src', 'limit': 1000, 'bucket': '1s', 'from': '-900s'}, {'by': 'app,src',
                   'bucket': ',1s'}, {'by': 'app,src', 'limit': '3,0'}]:
        st, j = get_json(s.port, '/api/v1/top', params)
        check(st == 400, 'top %s: 400 (%s)' % (params, j.get('error')))
    st, j = get_json(s.port, '/api/v1/top', {'by': 'x' * 50 + ',src'})
    check(st == 400 and j.get('error', '').startswith("unknown by '" + 'x' * 40 + "...'"),
          'a key name longer than any: 400 unknown by (%s)' % j.get('error', '')[:60])
    for params in [{'by': 'color'}, {'metric': 'joules'}, {'bucket': '1s'}, {'bucket': 'soon', 'from': '-1h'},
                   {'bucket': '1s', 'from': '-30d'}, {'limit': 1001}, {'filter': '((('}]:
        st, j = get_json(s.port, '/api/v1/top', params)
        check(st == 400, 'top %s: 400 (%s)' % (params, j.get('error')))
    s.stop()


def case_hostile():
    """Hostile filters and requests: 400 with a position, the database unchanged."""
    db = fixture()
    before = sha(db)
    s = serve(db)
    hostile = ["app == 'TLS' OR 1=1", "app == TLS; DROP TABLE flows", "app == TLS -- x", "app == TLS or or",
               "' OR 1=1", "app == \x00", "(" * 1000 + "app == TLS" + ")" * 1000, "app == " + "A" * 10000,
               "dport in [" + ",".join(["1"] * 5000) + "]", "\u202e app == TLS", "src == 999.1.1.1",
               "bytes > 1Q", "app !== TLS", "not", ")"]
    for f in hostile:
        st, j = get_json(s.port, '/api/v1/flows', {'filter': f})
        ok = st in (400, 414) and j.get('error')
        if st == 400:
            ok = ok and (j.get('position') is not None or 'position' in j.get('error', '') or len(f) > 4096)
        check(ok, 'hostile filter %r...: %d %s' % (f[:30], st, str(j.get('error'))[:80]))
    # a filter that is fine but would scan: answers, database unchanged
    st, j = get_json(s.port, '/api/v1/flows', {'filter': 'host == "*onerror=*"'})
    check(st == 200 and len(j['flows']) == 2 and j['flows'][0]['host'] == '<img src=x onerror=alert(1)>',
          'host glob over the injection host: 2 rows (veth, underlay), host as sent')
    st, j = get_json(s.port, '/api/v1/flows', {'filter': 'host == "x\\" or 1=1 --"'})
    check(st == 200 and j['flows'] == [], 'a quote escaped inside a string is part of the value: no rows')
    st, j = get_json(s.port, '/api/v1/flows', {'filter': 'app == "TLS\' OR \'1\'=\'1"'})
    check(st == 200 and j['flows'] == [], 'quotes inside a value are a value: no rows')
    # paths and methods
    for path, code in [('/api/v1/nothing', 404), ('/api/v1/flows/1/2/3', 404), ('/etc/passwd', 404),
                       ('/api/v1/../../etc/passwd', 404)]:
        st, h, body = get(s.port, path)
        check(st == code, '%s: %d (got %d)' % (path, code, st))
    st, h, body = get(s.port, '/api/v1/flows', method='DELETE')
    check(st == 405 and 'GET' in h.get('allow', ''), 'DELETE /api/v1/flows: 405 with Allow')
    # raw garbage
    c = socket.create_connection(('127.0.0.1', s.port))
    c.sendall(b'GARBAGE\x00\x01\r\n\r\n')
    resp = c.recv(4096)
    c.close()
    check(resp.startswith(b'HTTP/1.1 400') or resp == b'', 'garbage request line: 400 or closed')
    # a NUL byte ended C-string parameters early (limit=10%00junk was limit=10):
    # 400 for all but filter, from and to, whose parsers say where it is
    for q in ['limit=10%00junk', 'format=csv%00x', 'order=id%00zz', 'cursor=-id:5:5%00zz']:
        st, h, body = get(s.port, '/api/v1/flows?' + q)
        check(st == 400 and b'NUL byte' in body, 'flows?%s: 400 (%s)' % (q, body[:60]))
    for q in ['by=app%00junk', 'metric=flows%00x', 'bucket=60s%00x&from=-1h']:
        st, h, body = get(s.port, '/api/v1/top?' + q)
        check(st == 400 and b'NUL byte' in body, 'top?%s: 400 (%s)' % (q, body[:60]))
    st, j = get_json(s.port, '/api/v1/flows', {'filter': 'app == "a\x00b"'})
    check(st == 400 and j.get('position') is not None, 'filter with a NUL: 400 at its position (%s)' % j.get('error'))
    # a parameter the route does not take (a typo answered every flow) or one
    # given twice (the first won): 400
    for path, q, what in [('/api/v1/flows', 'filtr=app%3D%3DDNS', "unknown parameter 'filtr'"),
                          ('/api/v1/flows', 'limit=10&limit=20', "'limit' given more than once"),
                          ('/api/v1/flows', 'from=-1h&from=abc', "'from' given more than once"),
                          ('/api/v1/top', 'by=app&order=id', "unknown parameter 'order'"),
                          ('/api/v1/stats', 'x=1', "unknown parameter 'x' (this takes none)"),
                          ('/api/v1/pcap', 'cursor=1', "unknown parameter 'cursor'")]:
        st, h, body = get(s.port, path + '?' + q)
        check(st == 400 and what.encode() in body, '%s?%s: 400 %s' % (path, q, body[:70]))
    st, h, body = get(s.port, '/healthz?probe=1')
    check(st == 200, '/healthz takes what a probe adds: 200')
    # errors that echo a parameter are JSON (UTF-8) whatever its bytes
    for q in ['order=%ff%fe', 'order=x' + '%C3%A9' * 20, 'format=%C0%AF', 'metric=%ED%A0%80']:
        path = '/api/v1/top?' + q if q.startswith('metric') else '/api/v1/flows?' + q
        st, h, body = get(s.port, path)
        try:
            j = json.loads(body.decode('utf-8'))
        except (UnicodeDecodeError, ValueError) as e:
            j = {'error': 'not JSON: %s' % e}
        check(st == 400 and h.get('content-type', '').startswith('application/json') and 'not JSON' not in j['error'],
              '%s: 400, JSON error %r' % (q[:30], j.get('error', '')[:60]))
    st, j = get_json(s.port, '/api/v1/flows', {'limit': 1})
    check(st == 200, 'still answering')
    s.stop()
    check(sha(db) == before, 'database unchanged by all of it')


def case_stats():
    db = fixture()
    s = serve(db)
    st, j = get_json(s.port, '/api/v1/stats')
    check(st == 200 and j['mode'] == 'serve' and j['flowdb']['max_id'] == 180 and j['flowdb']['bytes'] > 0,
          'stats in serve mode: mode, flowdb (max_id 180, bytes)')
    check('server' in j and j['server']['requests'] >= 1, 'stats: server counters')
    st, j = get_json(s.port, '/api/v1/interfaces')
    check(st == 200 and {i['iface'] for i in j} == {'veth.pcap', 'underlay.pcap'}, 'interfaces: both files')
    st, j = get_json(s.port, '/api/v1/fields')
    names = {f['name'] for f in j}
    check(st == 200 and {'src', 'dst', 'ip', 'dport', 'app', 'host', 'pod', 'iface', 'community_id', 'id'} <= names,
          'fields: the filter language\'s fields (%d)' % len(names))
    st, h, body = get(s.port, '/healthz')
    check(st == 200 and body == b'ok\n', 'healthz')
    st, h, body = get(s.port, '/')
    check(st == 200 and b'<html' in body and h['content-type'].startswith('text/html'), 'the web page at /')
    st, j = get_json(s.port, '/api/v1/openapi.json')
    check(st == 200 and j.get('openapi', '').startswith('3.') and '/api/v1/flows' in j['paths'],
          'the OpenAPI document')
    documented = set(j['paths'])
    for p in ['/api/v1/flows', '/api/v1/flows/{id}', '/api/v1/flows/{id}/pcap', '/api/v1/pcap', '/api/v1/top',
              '/api/v1/stats', '/api/v1/interfaces', '/api/v1/fields', '/metrics', '/healthz']:
        check(p in documented, 'OpenAPI documents %s' % p)
    s.stop()


def promtool_check(text):
    r = subprocess.run(['promtool', 'check', 'metrics'], input=text, capture_output=True, text=True)
    return r.returncode == 0, r.stdout + r.stderr


def prometheus_query(port, query_names, expect=lambda v: True):
    """A real Prometheus scraping 127.0.0.1:port; returns {name: value} from PromQL."""
    d = tempfile.mkdtemp(dir=TMP)
    cfg = os.path.join(d, 'prometheus.yml')
    with open(cfg, 'w') as f:
        f.write('global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: podcap\n'
                '    static_configs:\n      - targets: ["127.0.0.1:%d"]\n' % port)
    ps = socket.socket()
    ps.bind(('127.0.0.1', 0))
    pport = ps.getsockname()[1]
    ps.close()
    p = subprocess.Popen(['prometheus', '--config.file=' + cfg, '--storage.tsdb.path=' + os.path.join(d, 'data'),
                          '--web.listen-address=127.0.0.1:%d' % pport], stdout=subprocess.DEVNULL,
                         stderr=open(os.path.join(d, 'prom.log'), 'w'))
    got = {}
    try:
        for _ in range(120):
            time.sleep(0.5)
            try:
                for name in query_names:
                    st, j = get_json(pport, '/api/v1/query', {'query': name})
                    if st == 200 and j['data']['result']:
                        got[name] = j['data']['result']
            except OSError:
                continue
            if len(got) == len(query_names) and expect(got):
                break
    finally:
        p.terminate()
        p.wait(timeout=30)
    return got


def case_metrics():
    db = fixture()
    s = serve(db)
    st, h, body = get(s.port, '/metrics')
    ok, msg = promtool_check(body.decode())
    check(st == 200 and h['content-type'].startswith('text/plain; version=0.0.4'), '/metrics: text format 0.0.4')
    check(ok, 'promtool check metrics: clean %s' % msg.strip()[:300])
    got = prometheus_query(s.port, ['podcap_http_responses_total{code="2xx"}', 'podcap_flowdb_bytes'])
    check('podcap_flowdb_bytes' in got and float(got['podcap_flowdb_bytes'][0]['value'][1]) > 0,
          'a real Prometheus scraped us and answers PromQL podcap_flowdb_bytes')
    check(got.get('podcap_http_responses_total{code="2xx"}'), 'and podcap_http_responses_total{code="2xx"}')
    s.stop()


def case_auth():
    db = fixture(n=5)
    r = subprocess.run([PODCAP, 'serve', '--db', db, '--listen', '0.0.0.0:0'], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 1 and 'token' in r.stderr, 'a non-loopback address without a token is refused: %s'
          % r.stderr.strip())
    r = subprocess.run([PODCAP, 'serve', '--db', db, '--bogus'], capture_output=True, text=True, timeout=30)
    check(r.returncode == 2 and 'usage:' in r.stderr, 'a bad option: exit 2 with the usage line')
    r = subprocess.run([PODCAP, 'serve', '--db', os.path.join(TMP, 'missing.db')], capture_output=True, text=True,
                       timeout=30)
    check(r.returncode == 1 and 'missing.db' in r.stderr, 'a missing database: exit 1 naming it')
    tok = os.path.join(TMP, 'token')
    with open(tok, 'w') as f:
        f.write('s3cret-token-0123456789\n')
    s = Server([PODCAP, 'serve', '--db', db, '--listen', '0.0.0.0:0', '--token-file', tok])
    st, j = get_json(s.port, '/api/v1/flows')
    check(st == 401, 'no token: 401')
    st, j = get_json(s.port, '/api/v1/flows', headers={'Authorization': 'Bearer wrong-token-0123456789'})
    check(st == 401, 'wrong token: 401')
    st, j = get_json(s.port, '/api/v1/flows', headers={'Authorization': 'Bearer s3cret-token-0123456789'})
    check(st == 200 and j['flows'], 'right token: 200')
    for path in ['/healthz', '/']:
        st, h, body = get(s.port, path)
        check(st == 200, '%s needs no token' % path)
    for path in ['/metrics', '/api/v1/stats', '/api/v1/flows/1/pcap']:
        st, h, body = get(s.port, path)
        check(st == 401, '%s needs the token' % path)
    # unknown paths cannot be probed without the token (docs/server.md): 401, not 404,
    # under the public files' prefixes too; with it, 404
    for path in ['/api/v1/nope', '/api/nope', '/nope', '/js/nope.js']:
        st, h, body = get(s.port, path)
        st2, h2, body2 = get(s.port, path, headers={'Authorization': 'Bearer s3cret-token-0123456789'})
        check(st == 401 and 'bearer' in h.get('www-authenticate', '').lower() and st2 == 404,
              '%s: 401 without the token, 404 with it (%d, %d)' % (path, st, st2))
    st, h, body = get(s.port, '/api/v1/openapi.json')
    check(st == 200, 'the public files still need no token: /api/v1/openapi.json 200')
    s.stop()


def case_remote():
    """podcap flows|export --server print what they print with --db."""
    db = fixture()
    s = serve(db)
    url = 'http://127.0.0.1:%d' % s.port
    for args in [[], ['--ndjson'], ['--csv'], ['--json'], ['app == TLS'], ['--limit', '0', '--ndjson'],
                 ['--since', '2024-11-29T06:00:00.1Z', '--csv', '--limit', '0'], ['--app', 'DNS', '--limit', '5'],
                 ['--order', '-bytes', '--limit', '7', '--csv'], ['--order', 'id', '--ndjson', '--limit', '0'],
                 ['--order', '-first', 'proto == udp', '--limit', '3']]:
        a = subprocess.run([PODCAP, 'flows', '--db', db] + args, capture_output=True)
        b = subprocess.run([PODCAP, 'flows', '--server', url] + args, capture_output=True)
        check(a.returncode == 0 and b.returncode == 0 and a.stdout == b.stdout,
              'flows %s: --server prints what --db prints (%d bytes)' % (' '.join(args), len(a.stdout)))
    b = subprocess.run([PODCAP, 'flows', '--server', url, 'dport =='], capture_output=True, text=True)
    check(b.returncode == 2 and 'position' in b.stderr and '^' in b.stderr, 'a bad filter: exit 2, position, caret')
    for args in [['--flow', '5'], ['--flow', '5', '--flow', '7'], ['--filter', 'app == DNS', '--limit', '4'],
                 ['--app', 'TLS', '-F', 'pcap']]:
        a = subprocess.run([PODCAP, 'export', '--db', db, '-w', '-'] + args, capture_output=True)
        b = subprocess.run([PODCAP, 'export', '--server', url, '-w', '-'] + args, capture_output=True)
        check(a.returncode == 0 and b.returncode == 0 and len(a.stdout) > 0 and
              (a.stdout == b.stdout or (len(args) > 2 and capinfos_same(a.stdout, b.stdout))),
              'export %s: --server gives the capture --db gives' % ' '.join(args))
    b = subprocess.run([PODCAP, 'export', '--server', url, '--flow', '99999', '-w', '-'], capture_output=True, text=True)
    check(b.returncode == 1 and '404' in b.stderr, 'an unknown flow: exit 1, "404" in the message')
    s.stop()
    b = subprocess.run([PODCAP, 'flows', '--server', url], capture_output=True, text=True)
    check(b.returncode == 1 and url in b.stderr, 'a server that is gone: exit 1 naming it (%s)' % b.stderr.strip())


def capinfos_same(x, y):
    """Same packets (count and bytes) in two captures."""
    res = []
    for data in (x, y):
        p = os.path.join(TMP, 'cmp.pcapng')
        open(p, 'wb').write(data)
        r = subprocess.run(['capinfos', '-c', '-d', p], capture_output=True, text=True)
        res.append(re.findall(r'(Number of packets|Data size):\s+(.*)', r.stdout))
    return res[0] == res[1]


# ---- the agent (root) ------------------------------------------------------

def sh(cmd, check_rc=True):
    r = subprocess.run(cmd, shell=True, capture_output=True, text=True)
    if check_rc and r.returncode:
        raise RuntimeError('%s: %s' % (cmd, r.stderr))
    return r.stdout


def case_agent():
    if os.geteuid() != 0:
        skip('needs root (network namespaces, live capture)')
    tag = 'pcapi%d' % (os.getpid() % 100000)
    node, pod = tag + 'n', tag + 'p'
    try:
        sh('ip netns add %s && ip netns add %s' % (node, pod))
        sh('ip link add %sv type veth peer name eth0 netns %s' % (tag, pod))
        sh('ip link set %sv netns %s' % (tag, node))
        sh('ip -n %s addr add 10.77.0.1/24 dev %sv && ip -n %s link set %sv up && ip -n %s link set lo up'
           % (node, tag, node, tag, node))
        sh('ip -n %s addr add 10.77.0.2/24 dev eth0 && ip -n %s link set eth0 up && ip -n %s link set lo up'
           % (pod, pod, pod))
        d = os.path.join(TMP, 'agent')
        os.makedirs(d)
        db = os.path.join(d, 'flows.db')
        s = Server([PODCAP, 'run', '--netns', node, '--iface', tag + 'v', '--db', db, '--store',
                    os.path.join(d, 'st'), '--listen', '127.0.0.1:0', '--stats-interval', '0',
                    '--idle-timeout', '2'], pattern=r'API and web page on http://[^:]+:(\d+)/')
        # traffic: pings and UDP from the pod to the node
        time.sleep(1)
        sh('ip netns exec %s ping -c 20 -i 0.05 10.77.0.1' % pod)
        sh('ip netns exec %s bash -c "for i in 1 2 3 4 5; do echo hi > /dev/udp/10.77.0.1/5353; done"' % pod,
           check_rc=False)
        ok = False
        for _ in range(100):
            st, j = get_json(s.port, '/api/v1/stats')
            ifs = {i['iface']: i for i in j.get('interfaces', [])}
            if st == 200 and ifs.get(tag + 'v', {}).get('received', 0) >= 40 and j['flows']['records'] > 0:
                ok = True
                break
            time.sleep(0.2)
        check(ok, 'agent stats: the interface received the pings, records made (%s)' % j.get('interfaces'))
        check(j['mode'] == 'agent' and j['backend'] in ('ebpf', 'pcap') and 'capture' in j and 'decode' in j and
              'sinks' in j and 'pktstore' in j, 'agent stats: backend, capture, decode, sinks, pktstore')
        cap = j.get('capture', {})
        check('counts_lost' in cap and (j['backend'] != 'ebpf' or
                                        (cap.get('flow_map_size') == 65536 and 0 < cap.get('flow_map_entries', 0) < 65536)),
              'agent stats: counts_lost, and the eBPF flow map\'s fill (%s)' % cap)
        check(j.get('flowdb', {}).get('names_expired') == 0 and 'lost' in j.get('flowdb', {}),
              'agent stats: flowdb.names_expired and lost')
        ok = False
        for _ in range(100):
            st, j = get_json(s.port, '/api/v1/flows', {'filter': 'proto == icmp'})
            if st == 200 and j['flows']:
                ok = True
                break
            time.sleep(0.2)
        check(ok, 'the ping flow is in /api/v1/flows while the agent runs')
        if ok:
            fid = j['flows'][0]['id']
            st, h, body = get(s.port, '/api/v1/flows/%s/pcap' % fid)
            p = os.path.join(d, 'ping.pcapng')
            open(p, 'wb').write(body)
            r = subprocess.run(['tshark', '-r', p, '-Y', 'icmp'], capture_output=True, text=True)
            check(st == 200 and r.returncode == 0 and len(r.stdout.splitlines()) >= 2,
                  'its packets download from the live store and tshark reads them')
        st, h, body = get(s.port, '/metrics')
        text = body.decode()
        ok, msg = promtool_check(text)
        check(ok, 'agent /metrics: promtool check metrics clean %s' % msg.strip()[:300])
        check(re.search(r'podcap_interface_received_packets_total\{iface="%sv"' % tag, text) is not None,
              'agent /metrics: per-interface packets')
        check(re.search(r'^podcap_stream_dropped_total \d+$', text, re.M) is not None and
              re.search(r'^podcap_streams_open \d+$', text, re.M) is not None,
              'agent /metrics: live stream counters (open, dropped)')
        # every loss /api/v1/stats shows is in /metrics too (an alert sees them all)
        miss = [m for m in ['podcap_flow_skipped_packets_total', 'podcap_dpi_alloc_failures_total',
                            'podcap_decode_frames_cut_total', 'podcap_pktstore_skipped_limit_total',
                            'podcap_pktstore_warnings_total', 'podcap_capture_counts_lost_total',
                            'podcap_flowdb_names_expired_total', 'podcap_http_rejected_total{reason="auth"}']
                if not re.search(r'^%s \d+$' % re.escape(m), text, re.M)]
        check(not miss, 'agent /metrics: the losses of /api/v1/stats (missing: %s)' % miss)
        got = prometheus_query(s.port, ['podcap_interface_received_packets_total', 'podcap_app_flows_total'],
                               expect=lambda g: True)
        check('podcap_interface_received_packets_total' in got and
              any(r['metric'].get('iface') == tag + 'v' and float(r['value'][1]) >= 40
                  for r in got['podcap_interface_received_packets_total']),
              'Prometheus scraped the agent: PromQL podcap_interface_received_packets_total{iface=%sv} >= 40' % tag)
        check('podcap_app_flows_total' in got, 'and podcap_app_flows_total (flows ended by the idle timeout)')
        s.stop()
    finally:
        sh('ip netns del %s 2>/dev/null; ip netns del %s 2>/dev/null' % (node, pod), check_rc=False)


CASES = {n[5:]: f for n, f in globals().items() if n.startswith('case_')}


def main():
    global PODCAP, TMP
    if len(sys.argv) != 3 or sys.argv[2] not in CASES:
        print('usage: api_test.py PODCAP CASE (%s)' % ', '.join(CASES), file=sys.stderr)
        return 2
    PODCAP = os.path.abspath(sys.argv[1])
    for tool in ['tshark', 'capinfos', 'promtool', 'prometheus']:
        if not shutil.which(tool):
            skip('%s not installed (scripts/install-deps)' % tool)
    try:
        import scapy  # noqa: F401
    except ImportError:
        skip('scapy not installed for /usr/bin/python3')
    TMP = tempfile.mkdtemp(prefix='podcap-api-')
    try:
        CASES[sys.argv[2]]()
    except Exception as e:  # a crash is a failure, with its story
        import traceback
        traceback.print_exc()
        FAILS.append('exception: %s' % e)
    finally:
        for s in list(PROCS):
            s.p.kill()
            s.p.wait()
        shutil.rmtree(TMP, ignore_errors=True)
    print('%d failure(s)' % len(FAILS))
    return 1 if FAILS else 0


if __name__ == '__main__':
    sys.exit(main())
