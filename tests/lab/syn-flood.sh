#!/usr/bin/env bash
# Issue 17: a SYN flood with random sources and ports against the agent.  Two
# namespaces of our own (pc-synflood-a sends with trafgen, pc-synflood-b runs
# `podcap run --max-flows 4096` on its end of a veth pair) under the lab lock.
# Every SYN is a new flow, so the flow table fills at once and stays full:
#   - the agent's memory stops growing once the table is full: its resident size
#     in the last third of the flood is within 16 MiB of the first third's, and
#     its peak stays under what it had before the flood plus 4096 flows at
#     16 KiB each (64 MiB; a flow with its nDPI state is a few KiB);
#   - evictions are counted (evicted= in the agent's counters, > 0);
#   - capture goes on: the agent keeps receiving during the flood, and a ping
#     after it is recorded as a flow in the database.
#   syn-flood.sh SRCDIR PODCAP [PACKETS] [RATE_PPS]
set -u
src=${1:?usage: syn-flood.sh SRCDIR PODCAP [PACKETS] [RATE_PPS]}
podcap=$(readlink -f "${2:?usage: syn-flood.sh SRCDIR PODCAP}")
packets=${3:-300000}
rate=${4:-30000}
if [ "$(id -u)" != 0 ]; then echo "SKIP: syn-flood needs root (network namespaces)"; exit 77; fi
for t in trafgen ip sqlite3 ping; do
  command -v $t >/dev/null || { echo "SKIP: $t missing (netsniff-ng, iproute2, sqlite3, iputils-ping)"; exit 77; }
done
# the whole test holds the lab lock (re-entrant when the caller holds it)
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$src/lab/lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
A=pc-synflood-a B=pc-synflood-b
tmp=$(mktemp -d /tmp/pc-synflood.XXXXXX)
agent=""
cleanup() {
  [ -n "$agent" ] && kill "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok()  { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

ip netns del $A 2>/dev/null; ip netns del $B 2>/dev/null
ip netns add $A && ip netns add $B || { echo "FAIL - cannot create namespaces"; exit 1; }
ip link add veth-sfa netns $A type veth peer name veth-sfb netns $B || { echo "FAIL - veth"; exit 1; }
ip -n $A link set lo up; ip -n $B link set lo up
ip -n $A link set veth-sfa address 02:00:00:00:99:01 up
ip -n $B link set veth-sfb address 02:00:00:00:99:02 up
ip -n $A addr add 10.99.0.1/24 dev veth-sfa
ip -n $B addr add 10.99.0.2/24 dev veth-sfb
cat > "$tmp/syn.cfg" <<'EOF'
{
  eth(da=02:00:00:00:99:02, sa=02:00:00:00:99:01, type=0x0800),
  ipv4(saddr=drnd(), daddr=10.99.0.2, ttl=64, proto=6),
  tcp(sport=drnd(), dport=80, seq=drnd(), syn, window=65535)
}
EOF

max_flows=4096
# Under AddressSanitizer (scripts/test's second run) freed memory waits in a
# 256 MiB quarantine before reuse, which a flood of evictions fills: the bound
# below is about podcap's table, so the agent gets a small quarantine there.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4" \
"$podcap" run --netns $B --iface veth-sfb --db "$tmp/f.db" --max-flows $max_flows --idle-timeout 120 \
  --no-conntrack --stats-interval 2 --duration 60 >"$tmp/agent.out" 2>"$tmp/agent.err" &
agent=$!
rss() { awk '/^VmRSS/ {print $2}' /proc/$agent/status 2>/dev/null || echo 0; }
for _ in $(seq 50); do grep -q 'capturing on veth-sfb' "$tmp/agent.out" && break; sleep 0.1; done
grep -q 'capturing on veth-sfb' "$tmp/agent.out" || { bad "the agent did not start"; cat "$tmp/agent.err"; exit 1; }
ip netns exec $A ping -c 2 -i 0.2 -q 10.99.0.2 >/dev/null   # warm up: the first flows
sleep 2
base=$(rss)

# the flood, with the agent's resident size sampled every 0.25 s
ip netns exec $A trafgen -c "$tmp/syn.cfg" -o veth-sfa -n "$packets" -b "${rate}pps" -P 1 -q -C \
  >"$tmp/trafgen.out" 2>&1 &
tg=$!
: > "$tmp/rss"
while kill -0 $tg 2>/dev/null; do rss >> "$tmp/rss"; sleep 0.25; done
wait $tg; tgrc=$?
sleep 3   # the tail of the flood through the pipeline
received_mid=$(grep -o 'received=[0-9]*' "$tmp/agent.out" | tail -1 | cut -d= -f2)
# after the flood: an ordinary exchange must still become a flow
t_after=$(date +%s)
ip netns exec $A ping -c 3 -i 0.2 -q 10.99.0.2 >/dev/null || bad "ping after the flood failed"
sleep 1
kill -INT $agent; wait $agent; arc=$?; agent=""

n=$(wc -l < "$tmp/rss")
peak=$(sort -n "$tmp/rss" | tail -1)
first=$(head -n $((n / 3 > 0 ? n / 3 : 1)) "$tmp/rss" | sort -n | tail -1)
last=$(tail -n $((n / 3 > 0 ? n / 3 : 1)) "$tmp/rss" | sort -n | tail -1)
final=$(grep 'podcap run: final' "$tmp/agent.out" | tail -1)
[ -n "$final" ] || final=$(grep -E '^podcap run: .*received=' "$tmp/agent.out" | tail -1)
evicted=$(echo "$final" | grep -o ' evicted=[0-9]*' | cut -d= -f2)
received=$(echo "$final" | grep -o 'received=[0-9]*' | head -1 | cut -d= -f2)
echo "flood: $packets SYNs at ${rate} pps from random sources and ports (trafgen exit $tgrc)"
echo "agent: exit $arc; resident $base KiB before, peak $peak KiB, first third max $first KiB, last third max $last KiB ($n samples)"
echo "agent:$(echo "$final" | grep -oE ' (backend|received|kernel_drops|ring_drops|decoded|flows_active|records|evicted)=[^ ]*' | tr -d '\n')"
[ $arc = 0 ] && ok "the agent ran through the flood and stopped cleanly" || { bad "agent exit $arc"; tail -5 "$tmp/agent.err"; }
[ "${received:-0}" -ge $((packets / 2)) ] && ok "the agent received $received packets of $packets (kernel and ring drops counted apart)" ||
  bad "the agent received only ${received:-0} packets"
[ "${evicted:-0}" -gt 0 ] && ok "evictions counted: $evicted" || bad "no evictions counted: $final"
[ "$peak" -le $((base + max_flows * 16)) ] && ok "peak resident size $peak KiB <= $base + $max_flows x 16 KiB" ||
  bad "peak resident size $peak KiB > $base + $((max_flows * 16)) KiB"
[ "$last" -le $((first + 16384)) ] && ok "memory flat once the table is full (last third $last KiB vs first third $first KiB)" ||
  bad "memory still growing: first third $first KiB, last third $last KiB"
icmp=$(sqlite3 "$tmp/f.db" "SELECT count(*) FROM flows WHERE ip_proto = 1 AND last_us >= ${t_after}000000" 2>&1)
[ "${icmp:-0}" -ge 1 ] 2>/dev/null && ok "capture goes on: the ping after the flood is a flow record" ||
  bad "no flow for the ping after the flood ($icmp)"
exit $fail
