#!/usr/bin/env bash
# podcap read / podcap flows on bad input: every case gives a clear message and a
# non-zero exit, never a crash, and never a half-written database.
#   read-bad-input.sh PODCAP
set -u
podcap=${1:?usage: read-bad-input.sh PODCAP}
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
mnt=""
cleanup() { [ -n "$mnt" ] && umount "$mnt" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
ok()   { echo "ok - $*"; }
bad()  { echo "FAIL - $*"; fail=1; }

# expect STATUS PATTERN -- command...: runs it, checks exit status and that stderr
# matches PATTERN (a clear message), and that it did not die on a signal.
expect() {
  local want=$1 pat=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  if [ $got -ge 128 ]; then bad "$* died with signal $((got - 128))"; cat "$tmp/err"; return; fi
  if [ "$got" != "$want" ]; then bad "$*: exit $got, want $want"; cat "$tmp/err"; return; fi
  if [ -n "$pat" ] && ! grep -Eq "$pat" "$tmp/err"; then bad "$*: message does not match /$pat/:"; cat "$tmp/err"; return; fi
  ok "$* -> exit $got: $(head -1 "$tmp/err")"
}
integrity() {
  local r; r=$(sqlite3 "$1" 'PRAGMA integrity_check' 2>&1)
  [ "$r" = ok ] && ok "integrity_check $1" || bad "integrity_check $1: $r"
}

# A small valid capture written by scapy (Debian's python).
/usr/bin/python3 - "$tmp" <<'PY'
import sys, struct
from scapy.all import Ether, IP, TCP, UDP, DNS, DNSQR, Raw, wrpcap
d = sys.argv[1]
pkts = []
for i in range(50):
    pkts.append(Ether()/IP(src="10.244.1.2", dst="10.244.2.3")/TCP(sport=40000+i, dport=80, flags="S"))
    pkts.append(Ether()/IP(src="10.244.1.2", dst="10.96.0.10")/UDP(sport=50000+i, dport=53)/DNS(rd=1, qd=DNSQR(qname="svc%d.default.svc.cluster.local" % i)))
wrpcap(d + "/good.pcap", pkts)
# pcapng with an unknown block type between the IDB and the packets: readers must skip it.
def blk(t, body):
    body += b"\0" * ((4 - len(body) % 4) % 4)
    n = 12 + len(body)
    return struct.pack("<II", t, n) + body + struct.pack("<I", n)
shb = blk(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1))
idb = blk(1, struct.pack("<HHI", 1, 0, 65535))
unk = blk(0x0BAD0001, b"not for you")
epbs = b""
for i, p in enumerate(pkts[:10]):
    raw = bytes(p)
    epbs += blk(6, struct.pack("<IIIII", 0, 0, i, len(raw), len(raw)) + raw)
open(d + "/unknown-block.pcapng", "wb").write(shb + idb + unk + epbs)
# classic pcap header claiming a 2 GB snaplen
open(d + "/huge-snaplen.pcap", "wb").write(struct.pack("<IHHiIII", 0xa1b2c3d4, 2, 4, 0, 0, 0x80000000, 1) + open(d + "/good.pcap", "rb").read()[24:])
PY
[ -s "$tmp/good.pcap" ] || { echo "cannot build test captures (python3-scapy missing?)"; exit 1; }

# 1. a good file works and its database is consistent
expect 0 '' -- "$podcap" read "$tmp/good.pcap" --db "$tmp/good.db" --quiet
integrity "$tmp/good.db"
n=$(sqlite3 "$tmp/good.db" 'select count(*) from flows')
[ "$n" = 100 ] && ok "100 flows stored" || bad "flows stored: $n, want 100"

# 2. truncated file: complete packets before the cut are kept, exit 1 with a message
size=$(stat -c %s "$tmp/good.pcap")
head -c $((size - 30)) "$tmp/good.pcap" > "$tmp/trunc.pcap"
expect 1 'truncated|after [0-9]+ packets' -- "$podcap" read "$tmp/trunc.pcap" --db "$tmp/trunc.db" --quiet
integrity "$tmp/trunc.db"
n=$(sqlite3 "$tmp/trunc.db" 'select count(*) from flows')
[ "$n" -ge 98 ] && ok "flows before the cut kept ($n)" || bad "flows before the cut: $n"

# 3. pcapng with an unknown block: skipped, packets read
expect 0 '' -- "$podcap" read "$tmp/unknown-block.pcapng" --db "$tmp/unk.db" --quiet
n=$(sqlite3 "$tmp/unk.db" 'select sum(c2s_pkts + s2c_pkts) from flows')
[ "$n" = 10 ] && ok "unknown pcapng block skipped, 10 packets" || bad "unknown block: packets $n, want 10"

# 4. 2 GB snaplen header: refused before any database is created
expect 1 'snaplen' -- "$podcap" read "$tmp/huge-snaplen.pcap" --db "$tmp/huge.db"
[ ! -e "$tmp/huge.db" ] && ok "no database created for a refused file" || bad "database created for a refused file"

# 5. not a capture file; an empty file; a directory; a missing file
printf 'hello, this is not a capture\n' > "$tmp/text.txt"; : > "$tmp/empty.pcap"
expect 1 'not a pcap' -- "$podcap" read "$tmp/text.txt" --db "$tmp/x.db"
expect 1 'empty file' -- "$podcap" read "$tmp/empty.pcap" --db "$tmp/x.db"
expect 1 'directory' -- "$podcap" read "$tmp" --db "$tmp/x.db"
expect 1 'No such file' -- "$podcap" read "$tmp/missing.pcap" --db "$tmp/x.db"
[ ! -e "$tmp/x.db" ] && ok "no database created for bad inputs" || bad "database created for bad inputs"

# 6. database path problems
expect 1 'unable to open|No such file|cannot' -- "$podcap" read "$tmp/good.pcap" --db "$tmp/no/such/dir/f.db"
head -c 8192 /dev/urandom > "$tmp/corrupt.db"
cp "$tmp/corrupt.db" "$tmp/corrupt.before"
expect 1 'not a database|corrupt' -- "$podcap" read "$tmp/good.pcap" --db "$tmp/corrupt.db"
cmp -s "$tmp/corrupt.db" "$tmp/corrupt.before" && ok "corrupt file left untouched" || bad "corrupt file was modified"
cp "$tmp/good.db" "$tmp/cut.db"; truncate -s 5000 "$tmp/cut.db"
expect 1 'corrupt|malformed|not a database|truncated' -- "$podcap" read "$tmp/good.pcap" --db "$tmp/cut.db"
if [ "$(id -u)" = 0 ]; then
  mnt="$tmp/ro"; mkdir -p "$mnt"
  cp "$tmp/good.db" "$tmp/ro.db"
  if mount -t tmpfs -o size=4m tmpfs "$mnt"; then
    cp "$tmp/good.db" "$mnt/flows.db"
    mount -o remount,ro "$mnt"
    expect 1 'read-only|readonly|Read-only' -- "$podcap" read "$tmp/good.pcap" --db "$mnt/flows.db"
    expect 1 'read-only|readonly|Read-only|unable to open' -- "$podcap" read "$tmp/good.pcap" --db "$mnt/new.db"
    r=$(sqlite3 "file:$mnt/flows.db?immutable=1" 'PRAGMA integrity_check' 2>&1)
    [ "$r" = ok ] && ok "integrity_check of the read-only database" || bad "integrity_check ro: $r"
    umount "$mnt"; mnt=""
  else
    echo "skip - cannot mount a tmpfs for the read-only case"
  fi
else
  echo "skip - read-only database cases need root (root ignores file modes, so we use a ro mount)"
fi

# 7. bad options: exit 2 with a usage line
expect 2 'usage: podcap read' -- "$podcap" read --db "$tmp/o.db"
expect 2 'usage: podcap read' -- "$podcap" read "$tmp/good.pcap"
expect 2 'usage: podcap read' -- "$podcap" read --bogus "$tmp/good.pcap" --db "$tmp/o.db"
expect 2 'usage: podcap read' -- "$podcap" read --max-flows -5 "$tmp/good.pcap" --db "$tmp/o.db"
expect 2 'usage: podcap read' -- "$podcap" read --store-cap 12Q "$tmp/good.pcap" --db "$tmp/o.db"
expect 2 'usage: podcap' -- "$podcap" frobnicate
expect 2 'usage: podcap' -- "$podcap"

[ $fail = 0 ] && echo "read-bad-input: all passed" || echo "read-bad-input: FAILED"
exit $fail
