#!/usr/bin/env bash
# `podcap read --inventory` names both ends of every flow (no root, no lab): a
# capture crafted with scapy from the lab's addresses, the lab's inventory
# (recordings/lab-pods.json), then `podcap flows` filters and columns.
#   read-names.sh SRCDIR PODCAP
set -u
src=${1:?usage: read-names.sh SRCDIR PODCAP}; podcap=${2:?}
/usr/bin/python3 -c 'import scapy' 2>/dev/null || { echo "SKIP: python3-scapy missing"; exit 77; }
tmp=$(mktemp -d /tmp/podcap-readnames.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

/usr/bin/python3 - "$tmp/lab.pcap" <<'PY'
import sys, time, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, TCP, UDP, DNS, DNSQR, Raw, wrpcap
from scapy.layers.vxlan import VXLAN
t = time.time()
pk = []
def add(p):
    global t
    p.time = t
    t += 0.001
    pk.append(p)
def tcp_conv(c, s, cp, sp, payload, wrap=None):
    w = wrap or (lambda p: Ether()/p)
    add(w(IP(src=c, dst=s)/TCP(sport=cp, dport=sp, flags="S", seq=100)))
    add(w(IP(src=s, dst=c)/TCP(sport=sp, dport=cp, flags="SA", seq=500, ack=101)))
    add(w(IP(src=c, dst=s)/TCP(sport=cp, dport=sp, flags="A", seq=101, ack=501)))
    add(w(IP(src=c, dst=s)/TCP(sport=cp, dport=sp, flags="PA", seq=101, ack=501)/Raw(payload)))
    add(w(IP(src=s, dst=c)/TCP(sport=sp, dport=cp, flags="PA", seq=501, ack=101 + len(payload))/
          Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")))
get = b"GET / HTTP/1.1\r\nHost: web\r\nUser-Agent: curl/7.88\r\n\r\n"
# 1. client-1 -> web-2 across nodes, on client-1's veth and VXLAN-encapsulated on the underlay
tcp_conv("10.244.1.12", "10.244.2.12", 41001, 8080, get)
vx = lambda p: Ether()/IP(src="172.18.0.11", dst="172.18.0.12")/UDP(sport=50000, dport=8472)/VXLAN(vni=1)/Ether()/p
tcp_conv("10.244.1.12", "10.244.2.12", 41011, 8080, get, vx)  # one observation point: another port
# 2. DNS to the kube-dns ClusterIP (seen before DNAT: no conntrack when reading a file)
add(Ether()/IP(src="10.244.1.12", dst="10.96.0.10")/UDP(sport=41002, dport=53)/DNS(rd=1, qd=DNSQR(qname="web.default.svc.cluster.local")))
# 3. node 2 to node 1's NodePort
tcp_conv("172.18.0.12", "172.18.0.11", 41004, 30080, get)
# 4. a lone SYN to POP3 on tls-1: nDPI's guess by port
add(Ether()/IP(src="10.244.1.12", dst="10.244.2.10")/TCP(sport=41005, dport=110, flags="S"))
wrpcap(sys.argv[1], pk)
PY
[ -s "$tmp/lab.pcap" ] || { echo "FAIL - scapy wrote no capture"; exit 1; }

"$podcap" read "$tmp/lab.pcap" --db "$tmp/f.db" --inventory "$src/tests/kube/recordings/lab-pods.json" \
  >"$tmp/read.out" 2>&1 || { cat "$tmp/read.out"; echo "FAIL - podcap read"; exit 1; }
grep -q 'names: source=inventory' "$tmp/read.out" && ok "read names from the inventory" || bad "no names line"

count() {
  "$podcap" flows --db "$tmp/f.db" --json "$1" 2>"$tmp/err" |
    /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo -1
}
expect() { # N FILTER
  local n; n=$(count "$2")
  [ "$n" = "$1" ] && ok "$n flow(s): $2" || bad "'$2': $n flows, want $1 ($(cat "$tmp/err"))"
}
expect 2 'src_pod == default/client-1 and dst_pod == default/web-2 and dport == 8080'
expect 1 'pod == web-2 and tunnel == vxlan and outer.node == pc-node1 and outer.node == pc-node2'
expect 2 'label.app == web and src_label.app == client and src_ns == default'
expect 2 'workload == Deployment/web and node == pc-node2'
expect 1 'dst == 10.96.0.10 and service == kube-system/kube-dns:53 and src_pod == client-1 and not dst_pod exists'
expect 1 'src_node == pc-node2 and dst_node == pc-node1 and service == default/web:80 and not pod exists'
expect 1 'dport == 110 and confidence == guess and app == POP3 and dst_pod == tls-1'
expect 4 'confidence == dpi'
expect 0 'pod == nosuch'

"$podcap" flows --db "$tmp/f.db" >"$tmp/table"
cat "$tmp/table"
grep -q 'default/client-1 -> kube-system/kube-dns:53 -> ?' "$tmp/table" && ok "table: client -> Service -> ?" || bad "table PODS with a Service"
grep -q 'node pc-node2 -> default/web:80 -> node pc-node1' "$tmp/table" && ok "table: NodePort from a node" || bad "table PODS NodePort"
grep -q 'POP3 (by-port)' "$tmp/table" && ok "table: a guess is marked" || bad "table guess"
"$podcap" flows --db "$tmp/f.db" --csv | head -1 | grep -q ',confidence,src_pod,src_ns,src_node,src_workload,src_labels,dst_pod,' &&
  ok "csv header" || bad "csv header"
"$podcap" flows --db "$tmp/f.db" --ndjson 'dport == 8080 and tunnel == none' |
  /usr/bin/python3 -c 'import json,sys; r=json.loads(sys.stdin.readline()); sys.exit(0 if r["dst_labels"]=={"app":"web","tier":"frontend"} and r["src_workload"]=="Deployment/client" and r["dst_node"]=="pc-node2" else 1)' &&
  ok "ndjson: labels as an object, workload, node" || bad "ndjson names"
# top talkers by the ends' names (/api/v1/top by src_pod, dst_pod, src_ns,
# dst_workload, service in one request): each as SQL counts it
/usr/bin/python3 - "$podcap" "$tmp/f.db" <<'PY' && ok "top by the ends' names = SQL's counts" || bad "top by names"
import json, re, sqlite3, subprocess, sys, urllib.parse, urllib.request
podcap, db = sys.argv[1:3]
p = subprocess.Popen([podcap, 'serve', '--db', db, '--listen', '127.0.0.1:0'], stdout=subprocess.PIPE,
                     stderr=subprocess.STDOUT, text=True)
try:
    port = None
    for _ in range(20):
        m = re.search(r'listening on https?://[^:]+:(\d+)/', p.stdout.readline())
        if m:
            port = int(m.group(1))
            break
    keys = ['src_pod', 'dst_pod', 'src_ns', 'dst_workload', 'service']
    q = urllib.parse.urlencode({'by': ','.join(keys), 'metric': 'flows', 'limit': 50})
    j = json.load(urllib.request.urlopen('http://127.0.0.1:%d/api/v1/top?%s' % (port, q), timeout=30))
    con = sqlite3.connect(db)
    good = True
    for k, t in zip(keys, j['tops']):
        want = dict(con.execute("SELECT coalesce(%s, ''), count(*) FROM flows GROUP BY 1" % k).fetchall())
        got = {r['key']: r['value'] for r in t['rows']}
        named = sorted(x for x in got if x)
        print('  by %-12s %s' % (k, ', '.join('%s=%d' % (x, got[x]) for x in named)))
        good = good and t['by'] == k and got == want and len(named) > 0
    sys.exit(0 if good else 1)
finally:
    p.terminate()
    p.wait()
PY
[ $fail = 0 ] && echo "read-names: all passed" || echo "read-names: FAILED"
exit $fail
