#!/usr/bin/env bash
# podcap export --inner, locally and through the API (podcap serve): a capture
# of one HTTP-like TCP exchange seen three ways -- on a pod veth, inside VXLAN
# on the flannel port 8472 (inner Ethernet kept), inside IPIP (made-up
# Ethernet) -- read with --store, exported with and without --inner.  With
# --inner every packet opens in tshark as the pods' own TCP packet (no VXLAN,
# no second IP header), every interface is Ethernet, and the packet count is
# the same; without it the carriers are still there.  Also: GET
# /api/v1/stream on `podcap serve` answers 409.
#   export-inner.sh PODCAP
set -u
podcap=$1
py=/usr/bin/python3
for t in tshark curl; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
$py -c 'import scapy' 2>/dev/null || { echo "SKIP: python3-scapy missing"; exit 77; }
tmp=$(mktemp -d /tmp/pc-inner.XXXXXX)
srv=""
trap '[ -n "$srv" ] && kill $srv 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

$py - "$tmp/t.pcap" <<'PY'
import sys
from scapy.all import Ether, IP, TCP, UDP, Raw, wrpcap
from scapy.layers.vxlan import VXLAN
pods = [("10.244.1.12", "10.244.2.12", 40000)]
out, t = [], 1700000000.0
def tcp(flags, seq, ack, fwd=True, payload=b""):
    c, s, p = pods[0]
    ip = IP(src=c, dst=s) if fwd else IP(src=s, dst=c)
    l4 = TCP(sport=p, dport=8080, flags=flags, seq=seq, ack=ack) if fwd else \
         TCP(sport=8080, dport=p, flags=flags, seq=seq, ack=ack)
    return ip / l4 / Raw(payload) if payload else ip / l4
conv = [tcp("S", 100, 0), tcp("SA", 500, 101, False), tcp("A", 101, 501),
        tcp("PA", 101, 501, payload=b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"),
        tcp("PA", 501, 130, False, b"HTTP/1.1 200 OK\r\n\r\n"), tcp("FA", 130, 520), tcp("FA", 520, 131, False),
        tcp("A", 131, 521)]
for i, ip in enumerate(conv):
    veth = Ether(src="0a:58:0a:f4:01:0c", dst="0a:58:0a:f4:01:01") / ip
    vx = Ether(src="02:00:00:00:00:0b", dst="02:00:00:00:00:0c") / IP(src="172.18.0.11", dst="172.18.0.12") / \
         UDP(sport=50000 + i, dport=8472) / VXLAN(vni=1, flags=0x08) / \
         Ether(src="0a:58:0a:f4:01:0c", dst="0a:58:0a:f4:02:0c") / ip
    ipip = Ether(src="02:00:00:00:00:0b", dst="02:00:00:00:00:0c") / \
           IP(src="172.18.0.11", dst="172.18.0.12", proto=4) / ip
    for p in (veth, vx, ipip):
        p.time = t
        t += 0.001
        out.append(p)
wrpcap(sys.argv[1], out)
PY
"$podcap" read "$tmp/t.pcap" --db "$tmp/f.db" --store "$tmp/store" >"$tmp/read.out" 2>&1 || { cat "$tmp/read.out"; bad "podcap read"; exit 1; }
n_in=$(tshark -r "$tmp/t.pcap" 2>/dev/null | wc -l)
ids=$("$podcap" flows --db "$tmp/f.db" --json --limit 100 | $py -c 'import json,sys; print(" ".join("--flow %s" % f["id"] for f in json.load(sys.stdin)))')
# shellcheck disable=SC2086
"$podcap" export --db "$tmp/f.db" $ids -w "$tmp/plain.pcapng" 2>"$tmp/x.err" || { cat "$tmp/x.err"; bad "export"; }
# shellcheck disable=SC2086
"$podcap" export --db "$tmp/f.db" $ids --inner -w "$tmp/inner.pcapng" 2>"$tmp/x.err" || { cat "$tmp/x.err"; bad "export --inner"; }
fields() { tshark -r "$@" -T fields -e frame.protocols -e ip.src -e tcp.dstport 2>/dev/null | sed 's/:data$//'; }
np=$(fields "$tmp/plain.pcapng" | wc -l); ni=$(fields "$tmp/inner.pcapng" | wc -l)
[ "$np" = "$n_in" ] && [ "$ni" = "$n_in" ] && ok "every packet exported both ways ($n_in)" || bad "packets: in $n_in, plain $np, inner $ni"
# Wireshark does not open VXLAN on 8472 unless told (-d): the reason for --inner
nv0=$(fields "$tmp/plain.pcapng" | grep -c vxlan)
nv=$(fields "$tmp/plain.pcapng" -d udp.port==8472,vxlan | grep -c vxlan); nx=$(fields "$tmp/plain.pcapng" | grep -c 'ip:ip')
[ "$nv0" = 0 ] && [ "$nv" = 8 ] && [ "$nx" = 8 ] && ok "without --inner: 8 VXLAN (on 8472, opened only with -d) and 8 IPIP carriers" ||
  bad "plain: vxlan $nv0/$nv ipip $nx"
bad_inner=$(fields "$tmp/inner.pcapng" | grep -Evc '^eth:ethertype:ip:tcp(:http)?	10\.244\.[12]\.12	')
[ "$bad_inner" = 0 ] && ok "with --inner: every packet is eth:ip:tcp between the pods" || {
  bad "inner: $bad_inner packets are not the pods' TCP"; fields "$tmp/inner.pcapng" | head; }
macs=$(tshark -r "$tmp/inner.pcapng" -T fields -e eth.src 2>/dev/null | sort | uniq -c | awk '{print $2"="$1}' | paste -sd' ')
# the client's MAC: 8 on the veth + 8 kept from VXLAN's inner frame; IPIP's 8 made up
[ "$macs" = "00:00:00:00:00:00=8 0a:58:0a:f4:01:0c=16" ] && ok "inner Ethernet: VXLAN's kept, IPIP's made up ($macs)" ||
  bad "inner Ethernet addresses: $macs"
lt=$(tshark -r "$tmp/inner.pcapng" -T fields -e frame.interface_name -e frame.encap_type 2>/dev/null | sort -u | awk '{print $NF}' | sort -u | paste -sd,)
[ "$lt" = 1 ] && ok "every interface Ethernet" || bad "encapsulation types: $lt"
http=$(tshark -r "$tmp/inner.pcapng" -Y 'tcp.payload contains "GET /"' 2>/dev/null | wc -l)
[ "$http" = 3 ] && ok "the GET is there three times (veth, VXLAN, IPIP), as the pods sent it" || bad "GET seen $http times"

# The same through the API.
"$podcap" serve --db "$tmp/f.db" --listen 127.0.0.1:0 >"$tmp/serve.out" 2>&1 &
srv=$!
for i in $(seq 1 100); do grep -q 'http://' "$tmp/serve.out" && break; sleep 0.05; done
url=$(grep -o 'http://[0-9.:]*' "$tmp/serve.out" | head -1)
# shellcheck disable=SC2086
"$podcap" export --server "$url" $ids --inner -w "$tmp/remote.pcapng" 2>"$tmp/x.err" || { cat "$tmp/x.err"; bad "export --server --inner"; }
cmp -s <(fields "$tmp/remote.pcapng") <(fields "$tmp/inner.pcapng") && ok "export --server --inner: the same packets" ||
  bad "export --server --inner differs"
code=$(curl -s -o "$tmp/409.json" -w '%{http_code}' "$url/api/v1/stream?pod=web-1")
[ "$code" = 409 ] && grep -q "no live capture" "$tmp/409.json" && ok "podcap serve: /api/v1/stream is 409" ||
  bad "podcap serve stream: $code $(cat "$tmp/409.json")"
code=$(curl -s -o "$tmp/400.json" -w '%{http_code}' "$url/api/v1/pcap?inner=maybe")
[ "$code" = 400 ] && ok "inner=maybe is 400" || bad "inner=maybe: $code"
"$podcap" sniff web-1 --server "$url" -w "$tmp/s.pcapng" 2>"$tmp/s.err"; rc=$?
[ $rc = 1 ] && grep -q "409" "$tmp/s.err" && ok "podcap sniff against serve: exit 1, 409 shown" || bad "sniff vs serve: rc $rc $(cat "$tmp/s.err")"
# sniff -w as export -w (fsio_output): a refused stream leaves no file (nor a
# temporary one), a symbolic link is not written through, a missing value is seen
left=$(ls -A "$tmp" | grep -c '^\.s\.pcapng\.tmp-\|^s\.pcapng$')
[ "$left" = 0 ] && ok "refused stream: no output file left" || bad "refused stream left $(ls -A "$tmp")"
ln -s "$tmp/elsewhere" "$tmp/link.pcapng"
"$podcap" sniff web-1 --server "$url" -w "$tmp/link.pcapng" 2>"$tmp/s.err"; rc=$?
[ $rc = 1 ] && grep -q "is a symbolic link: not writing through it" "$tmp/s.err" && [ ! -e "$tmp/elsewhere" ] &&
  ok "sniff -w LINK: refused, exit 1" || bad "-w link: rc $rc $(cat "$tmp/s.err")"
"$podcap" sniff web-1 -w --server "$url" 2>"$tmp/s.err"; rc=$?
[ $rc = 2 ] && grep -q "a path may not start with '-'" "$tmp/s.err" && ok "sniff -w --server: a missing value, exit 2" ||
  bad "-w --server: rc $rc $(cat "$tmp/s.err")"
exit $fail
