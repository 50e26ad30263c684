#!/usr/bin/env bash
# eBPF: a flow that goes on past its first packets is recorded whole, and one that
# resumes after an idle end is a new flow, recorded whole too.  The kernel sends
# user space only the first 16 packets of a flow and then one per keepalive
# period (half the idle timeout); before that, user space ended a long flow as
# idle while the kernel still counted it, its record had the counts of that
# moment, and what came after -- the rest of the flow, or all of it when it
# resumed on the same tuple -- was in no record (a review, 2026-11-30: 41 of 80
# packets recorded).  Here, with --idle-timeout 2: 80 UDP packets at 20/s (4 s,
# twice the timeout), a pause of 5 s, then 30 more on the same tuple, and 40
# replies; the records of that tuple must add up to exactly what was sent, in
# two flows (80 + 20 replies, then 30 + 20), and the interface's kernel count
# must not go down when the ended flows' keys leave the map.
# usage: long-flow-test.sh SRCDIR PODCAP
SRC=$1 PODCAP=$2
. "$SRC/tests/capture/lib.sh"
require_root long-flow-test
command -v sqlite3 >/dev/null || { echo "SKIP: long-flow-test needs the sqlite3 CLI"; exit 77; }
TMP=$(mktemp -d /tmp/pc-long.XXXXXX)
S=pc-tls-$$ R=pc-tlr-$$
BG_PID=
cleanup() {
  set +e
  [ -n "$BG_PID" ] && kill "$BG_PID" 2>/dev/null
  cleanup_ns
  rm -rf "$TMP"
  return 0
}
trap cleanup EXIT
make_ns $S
make_ns $R
ip link add ls0 netns $S type veth peer name lr0 netns $R
ip -n $S addr add 10.78.0.1/24 dev ls0
ip -n $R addr add 10.78.0.2/24 dev lr0
ip -n $S link set ls0 up
ip -n $R link set lr0 up
ip -n $S neigh add 10.78.0.2 lladdr "$(ip -n $R -o link show lr0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)" dev ls0
ip -n $R neigh add 10.78.0.1 lladdr "$(ip -n $S -o link show ls0 | grep -o 'link/ether [^ ]*' | cut -d' ' -f2)" dev lr0

ip netns exec $R "$PODCAP" run --backend ebpf --iface lr0 --idle-timeout 2 --db "$TMP/flows.db" \
  --stats-interval 1 >"$TMP/run.out" 2>&1 &
BG_PID=$!
for i in $(seq 1 200); do
  grep -q 'podcap run: backend' "$TMP/run.out" && break
  kill -0 "$BG_PID" 2>/dev/null || { cat "$TMP/run.out"; fail "podcap run exited early"; }
  sleep 0.05
done
grep -q 'backend ebpf' "$TMP/run.out" || { echo "SKIP: eBPF backend not available here: $(head -3 "$TMP/run.out")"; exit 77; }
sleep 0.5

# send.py COUNT RATE REPLIES: COUNT datagrams 10.78.0.1:40000 -> .2:9100 at RATE/s;
# the first REPLIES of them answered by .2 (from its namespace, in parallel)
cat >"$TMP/send.py" <<'PY'
import socket, sys, time
count, rate = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.78.0.1", 40000))
for i in range(count):
    s.sendto(b"L" * 100, ("10.78.0.2", 9100))
    time.sleep(1 / rate)
PY
cat >"$TMP/reply.py" <<'PY'
import socket, sys, time
count = int(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.78.0.2", 9100))
s.settimeout(10)
for i in range(count):
    d, a = s.recvfrom(2048)
    s.sendto(b"R" * 60, a)
PY
ip netns exec $R /usr/bin/python3 "$TMP/reply.py" 20 &
RP=$!
sleep 0.2
ip netns exec $S /usr/bin/python3 "$TMP/send.py" 80 20
wait $RP || true
sleep 5   # past the idle timeout: the flow ends, its keys leave the map
ip netns exec $R /usr/bin/python3 "$TMP/reply.py" 20 &
RP=$!
sleep 0.2
ip netns exec $S /usr/bin/python3 "$TMP/send.py" 30 20
wait $RP || true
sleep 3.5 # the second flow ends as idle too
kill -INT "$BG_PID"
wait "$BG_PID" || { cat "$TMP/run.out"; fail "podcap run did not exit 0"; }
BG_PID=

q() { sqlite3 "$TMP/flows.db" "$1"; }
W="ip_proto = 17 AND ((sport = 40000 AND dport = 9100) OR (sport = 9100 AND dport = 40000))"
recs=$(q "SELECT group_concat(c2s_pkts || '+' || s2c_pkts || ':' || end_reason, ' ') FROM (SELECT * FROM flows WHERE $W ORDER BY first_us)")
total=$(q "SELECT sum(c2s_pkts) + sum(s2c_pkts) FROM flows WHERE $W")
echo "  records of the tuple (client+server packets:end): $recs; packets in them: $total of 150"
[ "$total" = 150 ] || fail "the records add up to $total packets, 150 were sent"
[ "$recs" = "80+20:idle 30+20:idle" ] || fail "records '$recs', want '80+20:idle 30+20:idle'"
pass "a long flow and its resumption: two records with every packet"
# what the interface counted never went down while keys left the map
counted=$(grep -E '^podcap run: +lr0 ' "$TMP/run.out" | tr ' ' '\n' | sed -n 's/^kernel_counted=//p' | tr '\n' ' ')
prev=0
for n in $counted; do
  [ "$n" -ge "$prev" ] || fail "lr0 kernel_counted went down: $counted"
  prev=$n
done
[ "$prev" -ge 150 ] || fail "lr0 kernel_counted ends at $prev, 150 packets were sent: $counted"
pass "lr0 kernel_counted never went down: $(echo $counted | tr ' ' '\n' | tail -3 | tr '\n' ' ')"
