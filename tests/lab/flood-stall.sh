#!/usr/bin/env bash
# Issue 13's stalled reader during the trafgen flood (root; skips otherwise):
# two namespaces joined by a veth, ../shared/bench/flood.trafgen (UDP over
# ~59,000 source ports) sent for a few seconds, `podcap run` on the receiving
# veth, once without a stream and once with a `podcap sniff -i VETH` that is
# stopped (SIGSTOP: it reads nothing) for the whole flood.  With the stalled
# reader the agent must record the same flows, the stream must report its losses
# (the agent's stream_dropped, sniff's "not delivered" count from the Interface
# Statistics Blocks, a valid file), and the agent's peak memory must stay within
# a bound of the run without the stream (the stream's buffer is 4 MiB).
# eBPF backend: with a stream, every packet of the veth goes through the ring.
#   flood-stall.sh SRCDIR PODCAP
set -u
src=${1:?usage: flood-stall.sh SRCDIR PODCAP}; podcap=${2:?}
if [ "$(id -u)" != 0 ]; then echo "SKIP: flood-stall needs root (network namespaces, BPF)"; exit 77; fi
conf=${FLOOD_CONF:-$src/../shared/bench/flood.trafgen}
[ -r "$conf" ] || { echo "SKIP: no $conf"; exit 77; }
for t in trafgen tshark; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
# The machine's namespaces are shared with the lab's tests: hold the lab lock.
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$src/lab/lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
SECS=${FLOOD_SECONDS:-4}
MEM_SLACK_KB=${MEM_SLACK_KB:-65536}
S=pc-fss-$$ R=pc-fsr-$$
tmp=$(mktemp -d /tmp/pc-floodstall.XXXXXX)
agent="" sniff=""
cleanup() {
  [ -n "$sniff" ] && { kill -CONT "$sniff"; kill -9 "$sniff"; } 2>/dev/null
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  for ns in $S $R; do ip netns del $ns 2>/dev/null; done
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

ip netns add $S && ip netns add $R || { echo "FAIL - netns"; exit 1; }
ip link add fs0 netns $S type veth peer name fr0 netns $R
for ns in $S $R; do
  ip netns exec $ns sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip -n $ns link set lo up
done
ip -n $S addr add 10.9.0.1/24 dev fs0
ip -n $R addr add 10.9.0.2/24 dev fr0
ip -n $S link set fs0 up
ip -n $R link set fr0 up
rx() { ip netns exec $R cat /sys/class/net/fr0/statistics/rx_packets; }
field() { grep 'podcap run: final' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }

run() { # NAME STREAM(0|1) -> $tmp/NAME.log, globals hwm_kb rxn
  local name=$1 with=$2 log=$tmp/$1.log i url
  ip netns exec $R "$podcap" run --backend ebpf --iface fr0 --db "$tmp/$name.db" --listen 127.0.0.1:0 \
    --stats-interval 0 >"$log" 2>&1 &
  agent=$!
  for i in $(seq 1 150); do grep -q 'capturing on fr0' "$log" && grep -q 'API and web page on' "$log" && break; sleep 0.1; done
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
  grep -q 'backend ebpf' "$log" && [ -n "$url" ] || { cat "$log"; bad "$name: agent did not start on eBPF"; return 1; }
  sleep 1.2
  if [ "$with" = 1 ]; then
    # The stream ends by itself (--seconds) after the flood; its reader is
    # stopped once the stream's header has come.
    ip netns exec $R "$podcap" sniff -i fr0 --seconds $((SECS + 8)) --server "$url" -w "$tmp/stalled.pcapng" \
      2>"$tmp/sniff.err" &
    sniff=$!
    for i in $(seq 1 100); do [ -s "$tmp/stalled.pcapng" ] && break; sleep 0.05; done
    kill -STOP $sniff
  fi
  local r0 r1
  r0=$(rx)
  ip netns exec $S timeout "$SECS" trafgen -o fs0 -c "$conf" -q >/dev/null 2>&1
  sleep 1
  r1=$(rx)
  rxn=$((r1 - r0))
  hwm_kb=$(sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' /proc/$agent/status)
  if [ "$with" = 1 ]; then
    streams=$(ip netns exec $R curl -s "$url/api/v1/stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin).get("streams"))')
    kill -CONT $sniff
    wait $sniff; src_rc=$?; sniff=""
  fi
  kill -INT $agent; wait $agent; agent=""
}

run plain 0 || exit 1
plain_records=$(field "$tmp/plain.log" records) plain_hwm=$hwm_kb plain_rx=$rxn
echo "   without a stream: rx=$plain_rx records=$plain_records received=$(field "$tmp/plain.log" received) ring_drops=$(field "$tmp/plain.log" ring_drops) VmHWM=${plain_hwm} kB"
run stalled 1 || exit 1
st_records=$(field "$tmp/stalled.log" records) st_hwm=$hwm_kb
st_dropped=$(field "$tmp/stalled.log" stream_dropped) st_packets=$(field "$tmp/stalled.log" stream_packets)
echo "   stalled stream:   rx=$rxn records=$st_records received=$(field "$tmp/stalled.log" received) ring_drops=$(field "$tmp/stalled.log" ring_drops) VmHWM=${st_hwm} kB stream_packets=$st_packets stream_dropped=$st_dropped"
echo "   stats during the stall: $streams"

[ -n "$plain_records" ] && [ "$plain_records" = "$st_records" ] &&
  ok "the agent recorded the same flows with a stalled stream: $st_records" ||
  bad "flow records: $plain_records without a stream, $st_records with a stalled one"
[ "${st_dropped:-0}" -gt 0 ] && ok "the agent counted $st_dropped stream packets it could not deliver" ||
  bad "no stream drops counted ($st_dropped)"
st_recv=$(field "$tmp/stalled.log" received)
[ $((st_packets + st_dropped)) = "$st_recv" ] &&
  ok "every packet the agent received is accounted for: written $st_packets + not delivered $st_dropped = received $st_recv" ||
  bad "stream $st_packets + $st_dropped != received $st_recv"
line=$(grep 'podcap sniff:' "$tmp/sniff.err" | tail -1)
nd=$(echo "$line" | sed -n 's/.* \([0-9]*\) not delivered by the agent.*/\1/p')
[ "$src_rc" = 0 ] && [ -n "$nd" ] && [ "$nd" = "$st_dropped" ] &&
  ok "the reader was told: $line" || bad "sniff (exit $src_rc): $(cat "$tmp/sniff.err"); agent dropped $st_dropped"
n=$(tshark -r "$tmp/stalled.pcapng" 2>/dev/null | wc -l)
w=$(echo "$line" | sed -n 's/^podcap sniff: \([0-9]*\) packets.*/\1/p')
[ -n "$w" ] && [ "$n" = "$w" ] && [ "$n" -gt 0 ] && ok "its file is valid: tshark reads its $n packets" ||
  bad "file: tshark $n packets, sniff said $w"
# The file's last Interface Statistics Block: isb_ifdrop (option 5) = the losses.
isb=$(/usr/bin/python3 - "$tmp/stalled.pcapng" <<'PY'
import struct, sys
d = open(sys.argv[1], "rb").read()
off, last, bo = 0, None, "<"
while off + 12 <= len(d):
    t, n = struct.unpack_from(bo + "II", d, off)
    if t == 0x0A0D0D0A:
        bo = "<" if d[off + 8:off + 12] == b"\x4d\x3c\x2b\x1a" else ">"
        t, n = struct.unpack_from(bo + "II", d, off)
    if n < 12 or off + n > len(d):
        break
    if t == 5:
        o = off + 20
        while o + 4 <= off + n - 4:
            code, ln = struct.unpack_from(bo + "HH", d, o)
            if code == 0:
                break
            if code == 5 and ln == 8:
                last = struct.unpack_from(bo + "Q", d, o + 4)[0]
            o += 4 + (ln + 3) // 4 * 4
    off += n
print(last)
PY
)
[ "$isb" = "$st_dropped" ] && ok "the file's last Interface Statistics Block says $isb packets dropped" ||
  bad "ISB ifdrop $isb, agent $st_dropped"
[ "$st_hwm" -le $((plain_hwm + MEM_SLACK_KB)) ] &&
  ok "the agent's peak memory stayed bounded: $st_hwm kB with the stalled stream, $plain_hwm kB without (slack $MEM_SLACK_KB kB)" ||
  bad "peak memory $st_hwm kB with the stalled stream, $plain_hwm kB without"
exit $fail
