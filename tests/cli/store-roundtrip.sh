#!/usr/bin/env bash
# Issue 4 acceptance: `podcap read --store` then `podcap export` of every flow gives
# back the captured frames byte for byte.  For each capture: read it with the packet
# store on, export every flow to its own pcapng, check each export with capinfos,
# merge them with mergecap, and compare the multiset of (length, sha1 of bytes,
# timestamp) with the input's.  Frames the input has and the exports lack must be
# exactly the ones podcap counted as not IP or malformed (they belong to no flow).
#   store-roundtrip.sh PODCAP [CAPTURE...]
set -u
podcap=${1:?usage: store-roundtrip.sh PODCAP [CAPTURE...]}; shift
here=$(cd "$(dirname "$0")" && pwd)
for t in capinfos mergecap tshark sqlite3 jq; do
  command -v $t >/dev/null || { echo "SKIP: $t not installed (wireshark-common, tshark, sqlite3)"; exit 77; }
done
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
fail=0
bad() { echo "FAIL - $*"; fail=1; }

files=("$@")
if [ ${#files[@]} = 0 ]; then
  # Our own capture (always there): plain, VLAN and VXLAN-encapsulated flows.
  mkdir -p "$tmp/in"
  /usr/bin/python3 - "$tmp/in/own.pcap" <<'PY' || { echo "cannot build the test capture"; exit 1; }
import sys
from scapy.all import Ether, Dot1Q, IP, TCP, UDP, ARP, VXLAN, DNS, DNSQR, Raw, wrpcap
pk = []
t = 1700000000.0
def add(p):
    global t
    p.time = t; t += 0.001; pk.append(p)
for i in range(20):
    c, s = "10.244.1.%d" % (10 + i % 5), "10.244.2.3"
    add(Ether()/IP(src=c, dst=s)/TCP(sport=40000 + i, dport=80, flags="S", seq=1))
    add(Ether()/IP(src=s, dst=c)/TCP(sport=80, dport=40000 + i, flags="SA", seq=9, ack=2))
    add(Ether()/IP(src=c, dst=s)/TCP(sport=40000 + i, dport=80, flags="A", seq=2, ack=10))
    add(Ether()/IP(src=c, dst=s)/TCP(sport=40000 + i, dport=80, flags="PA", seq=2, ack=10)/Raw(b"GET / HTTP/1.1\r\nHost: web\r\n\r\n"))
    add(Ether()/Dot1Q(vlan=7)/IP(src=c, dst="10.96.0.10")/UDP(sport=50000 + i, dport=53)/DNS(qd=DNSQR(qname="svc%d.cluster.local" % i)))
    inner = Ether()/IP(src="10.244.1.2", dst="10.244.3.%d" % i)/TCP(sport=33000, dport=8443, flags="S")
    add(Ether()/IP(src="172.18.0.11", dst="172.18.0.12")/UDP(sport=51000 + i, dport=4789)/VXLAN(vni=42)/inner)
    add(Ether()/ARP(psrc=c, pdst=s))
wrpcap(sys.argv[1], pk)
PY
  files=("$tmp/in/own.pcap")
  corpus=${PODCAP_CORPUS:-$here/../../../shared/corpus/ndpi}
  if [ -d "$corpus/pcap" ]; then
    for f in 443-chrome.pcapng 443-firefox.pcap dns_long_domainname.pcap vxlan.pcap 6in4tunnel.pcap ftp.pcap; do
      [ -f "$corpus/pcap/$f" ] && files+=("$corpus/pcap/$f")
    done
  else
    echo "note: nDPI corpus not found at $corpus; only the generated capture is used"
  fi
fi

for f in "${files[@]}"; do
  name=$(basename "$f"); d="$tmp/$name"; mkdir -p "$d/exp"
  "$podcap" read "$f" --db "$d/flows.db" --store "$d/store" > "$d/read.txt" 2>&1 || { bad "$name: read failed: $(cat "$d/read.txt")"; continue; }
  skipped=$(awk '/^not ip/ {gsub(",", ""); print $3 + $5 + $8}' "$d/read.txt")
  ids=$(sqlite3 "$d/flows.db" "SELECT id FROM flows ORDER BY id")
  nflows=0; nerr=0
  for id in $ids; do
    nflows=$((nflows + 1))
    if ! "$podcap" export --db "$d/flows.db" --flow "$id" -w "$d/exp/$id.pcapng" 2>"$d/err"; then
      bad "$name: flow $id: export failed: $(cat "$d/err")"; nerr=$((nerr + 1)); continue
    fi
    capinfos "$d/exp/$id.pcapng" >/dev/null 2>"$d/cerr" || { bad "$name: flow $id: capinfos: $(cat "$d/cerr")"; nerr=$((nerr + 1)); }
    [ -s "$d/cerr" ] && { bad "$name: flow $id: capinfos complained: $(cat "$d/cerr")"; nerr=$((nerr + 1)); }
  done
  if [ "$nflows" = 0 ]; then bad "$name: no flows"; continue; fi
  mergecap -w "$d/all.pcapng" "$d"/exp/*.pcapng 2>"$d/err" || { bad "$name: mergecap: $(cat "$d/err")"; continue; }
  tshark -r "$d/all.pcapng" -T fields -e frame.len >/dev/null 2>"$d/terr" || bad "$name: tshark cannot read the merged export: $(cat "$d/terr")"
  grep -v 'Running as user' "$d/terr" > "$d/terr2"
  [ -s "$d/terr2" ] && bad "$name: tshark complained: $(cat "$d/terr2")"
  /usr/bin/python3 - "$f" "$d/all.pcapng" "${skipped:-0}" "$name" <<'PY' || fail=1
import sys, hashlib, collections, logging
# scapy 2.5 mis-parses pcapng comment options and warns; Wireshark's readers are
# the judges of the files (capinfos/tshark above), scapy only hashes frames.
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.utils import RawPcapReader, RawPcapNgReader
def frames(path):
    with open(path, 'rb') as fh:
        magic = fh.read(4)
    R = RawPcapNgReader if magic == b'\x0a\x0d\x0d\x0a' else RawPcapReader
    out = collections.Counter()
    for data, meta in R(path):
        if hasattr(meta, 'sec'):
            ts = (meta.sec, meta.usec)
        else:
            t = (meta.tshigh << 32) | meta.tslow
            res = getattr(meta, 'tsresol', 1000000) or 1000000
            ts = (t // res, (t % res) * 1000000 // res)
        wl = getattr(meta, 'wirelen', None) or len(data)
        out[(len(data), wl, hashlib.sha1(data).hexdigest(), ts)] += 1
    return out
inp, exp = frames(sys.argv[1]), frames(sys.argv[2])
skipped, name = int(sys.argv[3]), sys.argv[4]
extra = exp - inp
missing = inp - exp
ok = True
if extra:
    print("FAIL - %s: %d exported frames are not in the input (bytes, length or time differ)" % (name, sum(extra.values())))
    ok = False
if sum(missing.values()) != skipped:
    print("FAIL - %s: %d input frames missing from the exports, podcap counted %d as not-ip/malformed" % (name, sum(missing.values()), skipped))
    ok = False
if ok:
    print("ok - %s: %d frames exported byte-identical (with lengths and times), %d not in any flow (not ip/malformed)" % (name, sum(exp.values()), skipped))
sys.exit(0 if ok else 1)
PY
  echo "   $name: $nflows flows exported, $nerr errors"
done

# Retention: a 50 MB cap over a larger input keeps disk use under the cap, and the
# flows whose packets went say "expired".
big=${PODCAP_BIG_PCAP:-}
mk=$here/../../../shared/bench/make-bench-pcap
if [ -z "$big" ] && [ -x "$mk" ] && [ "$#" = 0 ]; then
  # two copies of the corpus: about 55 MB of real traffic, over the 50 MB cap
  "$mk" "$tmp/big.pcap" 2 >/dev/null 2>&1 && big=$tmp/big.pcap
fi
if [ -n "$big" ] && [ -s "$big" ]; then
  d="$tmp/retention"; mkdir -p "$d"
  "$podcap" read "$big" --db "$d/flows.db" --store "$d/store" --store-cap 50M --quiet || bad "retention read failed"
  use=$(du -sb "$d/store" | cut -f1)
  [ "$use" -le $((50 * 1024 * 1024)) ] && echo "ok - retention: store uses $use bytes <= 50 MiB" || bad "retention: $use bytes > 50 MiB"
  # what the packet store holds of each flow, as podcap flows shows it
  "$podcap" flows --db "$d/flows.db" --json --limit 0 > "$d/flows.json"
  n=$(jq '[.[] | select(.packets_state == "expired" or .packets_state == "partial")] | length' "$d/flows.json")
  [ "$n" -gt 0 ] && echo "ok - retention: $n flows report expired/partial packets" || bad "retention: no flow reports expired packets"
  id=$(jq -r '[.[] | select(.packets_state == "expired")][0].id // empty' "$d/flows.json")
  if [ -n "$id" ]; then
    "$podcap" export --db "$d/flows.db" --flow "$id" -w "$d/x.pcapng" 2>"$d/err"; rc=$?
    grep -q expired "$d/err" && [ $rc = 1 ] && echo "ok - export of expired flow $id: $(head -1 "$d/err")" || bad "export of expired flow $id: rc $rc: $(cat "$d/err")"
  fi
fi

# Full disk under the packet store (a 3 MB tmpfs, root only): every flow is still
# recorded, the refused packets are counted, their flows say "partial", exit 1, and
# the flow database is intact.
if [ "$(id -u)" = 0 ] && [ -n "${corpus:-}" ] && [ -f "$corpus/pcap/1kxun.pcap" ] && [ -f "$corpus/pcap/443-firefox.pcap" ]; then
  d="$tmp/full"; mkdir -p "$d/mnt"
  if mount -t tmpfs -o size=3m tmpfs "$d/mnt"; then
    "$podcap" read "$corpus/pcap/443-firefox.pcap" "$corpus/pcap/1kxun.pcap" --db "$d/flows.db" --store "$d/mnt/store" --quiet 2>"$d/err"; rc=$?
    # the packet store says which flows lost packets (its index kept room for that)
    p=$("$podcap" flows --db "$d/flows.db" --json --limit 0 | jq '[.[] | select(.packets_state == "partial")] | length')
    umount "$d/mnt"
    n=$(sqlite3 "$d/flows.db" "SELECT count(*) FROM flows")
    ic=$(sqlite3 "$d/flows.db" "PRAGMA integrity_check")
    if [ $rc = 1 ] && grep -q 'write errors' "$d/err" && [ "$n" -ge 190 ] && [ "$p" -gt 0 ] && [ "$ic" = ok ]; then
      echo "ok - full disk: exit 1, $(head -1 "$d/err" | cut -c1-80)..., $n flows recorded, $p partial, integrity ok"
    else
      bad "full disk: rc $rc, flows $n, partial $p, integrity $ic: $(cat "$d/err")"
    fi
  else
    echo "skip - full disk case: cannot mount a tmpfs"
  fi
fi

[ $fail = 0 ] && echo "store-roundtrip: all passed" || echo "store-roundtrip: FAILED"
exit $fail
