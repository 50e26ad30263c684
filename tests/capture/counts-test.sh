#!/usr/bin/env bash
# eBPF: every flow the kernel counted has a record, even one none of whose
# packets got through the ring.  The agent is stopped (SIGSTOP) while 3000 UDP
# flows of 20 packets each arrive (and 5 replies to each of the last 1000), so the
# 1 MiB ring fills and the heads of most flows are dropped; after SIGCONT and
# SIGINT every flow must have one record — those without a packet in user space
# as "counts" records of the kernel's counters, both directions in one — and the
# records must add up to exactly the 65,000 packets sent.  ICMP too: 20 hosts'
# echo requests and the kernel's replies into the full ring are 20 counts records
# with both directions (the kernel keys ICMP without type and code, as the flow
# table does), and a 40-packet ping after the ring drained gets the kernel's exact
# counts both ways although user space saw only the first 16 of each.
# usage: counts-test.sh SRCDIR PODCAP
SRC=$1 PODCAP=$2
. "$SRC/tests/capture/lib.sh"
require_root counts-test
command -v sqlite3 >/dev/null || { echo "SKIP: counts-test needs the sqlite3 CLI"; exit 77; }
TMP=$(mktemp -d /tmp/pc-counts.XXXXXX)
S=pc-tcs-$$ R=pc-tcr-$$
BG_PID=
cleanup() {
  set +e
  [ -n "$BG_PID" ] && { kill -CONT "$BG_PID"; kill "$BG_PID"; } 2>/dev/null
  cleanup_ns
  rm -rf "$TMP"
  return 0
}
trap cleanup EXIT
make_ns $S
make_ns $R
ip link add cs0 netns $S type veth peer name cr0 netns $R
ip -n $S addr add 10.77.0.1/24 dev cs0
ip -n $R addr add 10.77.0.2/24 dev cr0
ip -n $S link set cs0 up
ip -n $R link set cr0 up
# no ARP on the way: the flows are exactly the UDP ones sent
ip -n $S neigh add 10.77.0.2 lladdr "$(ip -n $R -o link show cr0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)" dev cs0
S_MAC=$(ip -n $S -o link show cs0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)
ip -n $R neigh add 10.77.0.1 lladdr "$S_MAC" dev cr0
for a in $(seq 11 31); do
  ip -n $S addr add 10.77.0.$a/24 dev cs0
  ip -n $R neigh add 10.77.0.$a lladdr "$S_MAC" dev cr0
done
# ICMP echo requests: ping.py FIRST LAST COUNT (source addresses 10.77.0.FIRST..LAST)
cat >"$TMP/ping.py" <<'PY'
import socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff)
    return ~(s + (s >> 16)) & 0xffff
first, last, count = map(int, sys.argv[1:4])
for a in range(first, last + 1):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.bind(("10.77.0.%d" % a, 0))
    for seq in range(count):
        m = struct.pack('!BBHHH', 8, 0, 0, a, seq) + b'p' * 32
        s.sendto(m[:2] + struct.pack('!H', csum(m)) + m[4:], ("10.77.0.2", 0))
        time.sleep(0.002)
    s.close()
PY

ip netns exec $R "$PODCAP" run --backend ebpf --iface cr0 --buffer 1M --db "$TMP/flows.db" \
  --stats-interval 0 >"$TMP/run.out" 2>&1 &
BG_PID=$!
for i in $(seq 1 200); do
  grep -q 'podcap run: backend' "$TMP/run.out" && break
  kill -0 "$BG_PID" 2>/dev/null || { cat "$TMP/run.out"; fail "podcap run exited early"; }
  sleep 0.05
done
grep -q 'backend ebpf' "$TMP/run.out" || { echo "SKIP: eBPF backend not available here: $(head -3 "$TMP/run.out")"; exit 77; }
sleep 0.5

kill -STOP "$BG_PID"
ip netns exec $S /usr/bin/python3 - <<'PY'
import socket
for port in range(20000, 23000):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("10.77.0.1", port))
    for _ in range(20):
        s.sendto(b"x" * 64, ("10.77.0.2", 9000))
    s.close()
PY
# replies to the last 1000 flows, 5 each, also into the full ring: each of those
# flows must be one counts-only record with both directions, not two
ip netns exec $R /usr/bin/python3 - <<'PY'
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("10.77.0.2", 9000))
for port in range(22000, 23000):
    for _ in range(5):
        s.sendto(b"y" * 32, ("10.77.0.1", port))
PY
# 20 ICMP flows of 5 requests and 5 replies, into the full ring as well
ip netns exec $S /usr/bin/python3 "$TMP/ping.py" 11 30 5
kill -CONT "$BG_PID"
sleep 1
# the ring drained: 40 requests and replies, of which user space sees 16 each way
# (from .31: between .1 and .2 go the kernels' rate-limited port unreachables)
ip netns exec $S /usr/bin/python3 "$TMP/ping.py" 31 31 40
sleep 0.3
kill -INT "$BG_PID"
wait "$BG_PID" || { cat "$TMP/run.out"; fail "podcap run did not exit 0"; }
BG_PID=
final=$(grep 'podcap run: final' "$TMP/run.out") || { cat "$TMP/run.out"; fail "no final counters"; }
get() { echo "$final" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
echo "$final" | tr ' ' '\n' | grep -E '^(received|ring_drops|records|kernel_flows|kernel_flows_delivered|counts_records|counts_lost)=' | tr '\n' ' '; echo
[ "$(get ring_drops)" -gt 0 ] || fail "the ring never overflowed: the test proves nothing"
[ "$(get counts_records)" -gt 0 ] || fail "no counts-only records although the ring dropped packets"
[ "$(get counts_lost)" = 0 ] || fail "counts-only records lost"
# the interface's exact total (summed in the same walk of the map, plus what the
# sweep took out of it) is the whole map's, and at least the 60,000 sent
ifc=$(grep -E '^podcap run: +cr0 ' "$TMP/run.out" | tail -1 | tr ' ' '\n' | sed -n 's/^kernel_counted=//p')
[ "$ifc" = "$(get kernel_counted_pkts)" ] || fail "cr0 kernel_counted=$ifc, all interfaces $(get kernel_counted_pkts)"
[ "$ifc" -ge 65000 ] || fail "cr0 counted $ifc packets, 65000 were sent"
q() { sqlite3 "$TMP/flows.db" "$1"; }
# the flows to port 9000, whichever end a record calls the client
W="ip_proto = 17 AND (dport = 9000 OR sport = 9000)"
flows=$(q "SELECT count(DISTINCT CASE WHEN dport = 9000 THEN sport ELSE dport END) FROM flows WHERE $W")
recs=$(q "SELECT count(*) FROM flows WHERE $W")
pkts=$(q "SELECT sum(c2s_pkts) + sum(s2c_pkts) FROM flows WHERE $W")
counts=$(q "SELECT count(*) FROM flows WHERE end_reason = 'counts'")
both=$(q "SELECT count(*) FROM flows WHERE end_reason = 'counts' AND $W AND c2s_pkts + s2c_pkts = 25 AND c2s_pkts > 0 AND s2c_pkts > 0")
cbad=$(q "SELECT count(*) FROM flows WHERE end_reason = 'counts' AND $W AND (c2s_pkts + s2c_pkts NOT IN (20, 25) OR proto_name != 'Unknown' OR dpi_done != 0)")
echo "  flows with a record: $flows of 3000 ($recs records); packets in records: $pkts of 65000; counts-only records: $counts, $both of them with replies"
[ "$flows" = 3000 ] || fail "$flows of 3000 flows have a record"
[ "$recs" = 3000 ] || fail "$recs records for 3000 flows: a flow split in two"
[ "$pkts" = 65000 ] || fail "records add up to $pkts packets, 65000 were sent"
[ "$counts" = "$(get counts_records)" ] || fail "$counts counts records stored, $(get counts_records) made"
[ "$both" = 1000 ] || fail "$both of the 1000 flows with replies are one counts record with both directions"
[ "$cbad" = 0 ] || fail "$cbad counts records with the wrong counters or a protocol"
# ICMP: one counts record per host pair with both directions, keeping the first
# packet's type and code (echo request 8/0) as a flow record does
icmp=$(q "SELECT count(*) || ' ' || sum(c2s_pkts) || ' ' || sum(s2c_pkts) || ' ' || sum(sport = 8 AND dport = 0)
          FROM flows WHERE ip_proto = 1 AND '10.77.0.1' NOT IN (src, dst) AND '10.77.0.31' NOT IN (src, dst)")
icmpc=$(q "SELECT count(*) FROM flows WHERE ip_proto = 1 AND end_reason = 'counts' AND '10.77.0.1' NOT IN (src, dst)")
ping=$(q "SELECT count(*) || ' ' || sum(c2s_pkts) || ' ' || sum(s2c_pkts) FROM flows
          WHERE ip_proto = 1 AND '10.77.0.31' IN (src, dst)")
echo "  ICMP into the full ring: records, requests, replies, typed 8/0: $icmp ($icmpc counts-only); the 40-packet ping: $ping"
[ "$icmp" = "20 100 100 20" ] || fail "ICMP flows into the full ring: '$icmp', want 20 records with 100 requests, 100 replies, all typed 8/0"
[ "$icmpc" = 20 ] || fail "$icmpc ICMP counts records, want 20"
[ "$ping" = "1 40 40" ] || fail "the 40-packet ping: '$ping', want one record with the kernel's 40 requests and 40 replies"
pass "every flow the kernel counted has a record ($counts from the kernel's counters alone)"
