#!/usr/bin/env bash
# Issue 13's bad input and edges on the lab (root; skips otherwise), against the
# agent on node 1 (eBPF): an unknown pod (404, exit 1), a bad BPF filter
# (libpcap's message, exit 2), a terminal as stdout (exit 2), too many streams
# (429 with Retry-After, exit 1), clients that vanish mid-stream (the agent
# keeps serving: a new stream gets packets, and the streams are all closed
# again), an interface as TARGET, --inner on the underlay (the pods' packets,
# no VXLAN) with a BPF filter on the inner packet, -c ending the stream with a
# valid file.  Built with ASan (the build-asan tree), the agent's exit must
# report no error and no leak.
#   lab-sniff-edges.sh SRCDIR PODCAP
set -u
src=${1:?usage: lab-sniff-edges.sh SRCDIR PODCAP}; podcap=${2:?}
if [ "$(id -u)" != 0 ]; then echo "SKIP: lab-sniff-edges needs root (network namespaces, BPF)"; exit 77; fi
for t in curl tshark script /usr/bin/python3; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
lab=$src/lab/lab
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
tmp=$(mktemp -d /tmp/pc-labsniffx.XXXXXX)
export PODCAP_LAB_INVENTORY=$tmp/pods.json
agent="" bg=""
cleanup() {
  for p in $bg; do kill -9 "$p" 2>/dev/null; done
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  "$lab" down >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }
py=/usr/bin/python3

"$lab" down >/dev/null 2>&1
"$lab" up >/dev/null || { echo "FAIL - lab up"; exit 1; }
log=$tmp/agent.log
# h2o's per-thread cache of pool chunks is known and bounded (server/lsan.supp).
ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1} LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$src/server/lsan.supp} \
"$podcap" run --netns pc-node1 --backend ebpf --db "$tmp/f.db" --inventory "$PODCAP_LAB_INVENTORY" \
  --listen 127.0.0.1:0 --stats-interval 0 >"$log" 2>&1 &
agent=$!
for i in $(seq 1 300); do grep -q 'capturing on eth0' "$log" && grep -q 'API and web page on' "$log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
[ -n "$url" ] || { cat "$log"; echo "FAIL - agent did not start"; exit 1; }
sleep 1.5
# The agent's open files but the flow database's (each API worker thread opens its
# own handle the first time it needs one: up to 4, not a leak).
nfds() { find /proc/$agent/fd -mindepth 1 -printf '%l\n' | grep -vc "^$tmp/f\.db"; }
curl -s "$url/api/v1/stats" >/dev/null
fd0=$(nfds)
traffic() { ip netns exec pc-client-1 curl -s -o /dev/null "http://10.244.2.12:8080/?r=[1-$1]"; }
streams_open() { curl -s "$url/api/v1/stats" | $py -c 'import json,sys; print(json.load(sys.stdin).get("streams", {}).get("open", -1))'; }

# unknown pod
"$podcap" sniff nosuch-pod --server "$url" -w "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc = 1 ] && grep -q "404: no pod or interface 'nosuch-pod'" "$tmp/err" && ok "unknown pod: exit 1, $(cat "$tmp/err")" ||
  bad "unknown pod: rc $rc: $(cat "$tmp/err")"
"$podcap" sniff client-1 -n kube-system --server "$url" -w "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc = 1 ] && grep -q "404" "$tmp/err" && ok "pod in another namespace: 404" || bad "wrong namespace: rc $rc: $(cat "$tmp/err")"
# bad BPF: libpcap's own words
"$podcap" sniff client-1 -f 'tcp portt 80' --server "$url" -w "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "400: bpf: .*syntax error" "$tmp/err" && ok "bad BPF: exit 2, $(cat "$tmp/err")" ||
  bad "bad BPF: rc $rc: $(cat "$tmp/err")"
# a terminal as stdout
script -qec "$podcap sniff client-1 --server $url" /dev/null >"$tmp/tty" 2>&1; rc=$?
[ $rc = 2 ] && grep -q "not writing a capture to a terminal" "$tmp/tty" && ok "terminal: exit 2, refused" ||
  bad "terminal: rc $rc: $(cat "$tmp/tty")"
# 17 iface parameters: 400, and the agent lives on (it read past its array of 16
# and died: a review, 2026-11-30)
q=$(printf 'iface=lo&%.0s' $(seq 1 17))
code=$(curl -s -o "$tmp/body" -w '%{http_code}' "$url/api/v1/stream?${q}seconds=1")
[ "$code" = 400 ] && grep -q 'at most 16 iface' "$tmp/body" && curl -sf "$url/api/v1/stats" >/dev/null &&
  ok "17 iface parameters: 400, $(cat "$tmp/body"); the agent still answers" || bad "17 iface parameters: $code $(cat "$tmp/body")"
# bad options
"$podcap" sniff client-1 -s 0 --server "$url" -w "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "^usage: podcap sniff" "$tmp/err" && ok "bad snap length: exit 2 with usage" || bad "-s 0: rc $rc"

# too many streams: 8 open, the 9th gets 429
for i in 1 2 3 4 5 6 7 8; do
  "$podcap" sniff client-1 --server "$url" -w "$tmp/many-$i.pcapng" 2>/dev/null &
  bg="$bg $!"
done
for i in $(seq 1 100); do [ "$(streams_open)" = 8 ] && break; sleep 0.05; done
"$podcap" sniff client-1 --server "$url" -w "$tmp/x" 2>"$tmp/err"; rc=$?
[ $rc = 1 ] && grep -q "429" "$tmp/err" && ok "9th stream: exit 1, $(cat "$tmp/err")" || bad "9th stream: rc $rc: $(cat "$tmp/err")"
hdr=$(curl -s -D - -o /dev/null "$url/api/v1/stream?pod=client-1" | tr -d '\r' | grep -iE '^(HTTP|retry-after)' | paste -sd' ')
case "${hdr,,}" in *429*retry-after:\ [0-9]*) ok "curl: $hdr";; *) bad "9th stream by curl: $hdr";; esac
traffic 20
sleep 1 # the last packets through the engine and the streams' 100 ms flushes
for p in $bg; do kill -INT "$p"; done
for p in $bg; do wait "$p"; done
bg=""
good=0 counts=""
for i in 1 2 3 4 5 6 7 8; do
  n=$(tshark -r "$tmp/many-$i.pcapng" 2>/dev/null | wc -l)
  [ "$n" -gt 100 ] && good=$((good + 1))
  counts="$counts $n"
done
[ $good = 8 ] && ok "8 streams at once, each a valid file with the traffic" || bad "$good of 8 streams valid (packets:$counts)"
for i in $(seq 1 50); do [ "$(streams_open)" = 0 ] && break; sleep 0.1; done
sleep 0.5
fdm=$(nfds) # after the first 8 streams

# clients that vanish mid-stream (kill -9: no goodbye), while packets flow
for i in 1 2 3; do
  curl -s -N "$url/api/v1/stream?pod=default/client-1" -o /dev/null &
  bg="$bg $!"
done
sleep 0.5
traffic 50 &
tp=$!
sleep 0.3
{ for p in $bg; do kill -9 "$p"; wait "$p"; done; } 2>/dev/null
wait $tp
bg=""
for i in $(seq 1 100); do [ "$(streams_open)" = 0 ] && break; sleep 0.1; done
[ "$(streams_open)" = 0 ] && ok "vanished clients: their streams closed" || bad "streams still open: $(streams_open)"
curl -sf "$url/healthz" >/dev/null && ok "the agent still answers" || bad "healthz"
# sniff's own reader leaves mid-stream (head closes the pipe): exit 0, says so,
# and the agent closes the stream
( sleep 0.5; traffic 30 ) &
tp=$!
timeout 60 "$podcap" sniff client-1 --server "$url" 2>"$tmp/err" | head -c 3000 >/dev/null
rc=${PIPESTATUS[0]}
wait $tp
[ $rc = 0 ] && grep -q "the reader went away" "$tmp/err" && ok "reader left: exit 0, $(tail -1 "$tmp/err")" ||
  bad "reader left: rc $rc: $(cat "$tmp/err")"
for i in $(seq 1 100); do [ "$(streams_open)" = 0 ] && break; sleep 0.1; done
[ "$(streams_open)" = 0 ] && ok "reader left: the agent closed its stream" || bad "streams still open: $(streams_open)"

# an interface as TARGET, -c ending the stream
veth=$($py -c 'import json,sys
for p in json.load(open(sys.argv[1]))["pods"]:
    if p["name"] == "client-1": print(p["host_veth"])' "$PODCAP_LAB_INVENTORY")
( sleep 1; traffic 20 ) &
tp=$!
timeout 60 "$podcap" sniff "$veth" -c 25 --server "$url" -w "$tmp/c25.pcapng" 2>"$tmp/err"; rc=$?
n=$(tshark -r "$tmp/c25.pcapng" 2>/dev/null | wc -l)
[ $rc = 0 ] && [ "$n" = 25 ] && ok "interface $veth as TARGET, -c 25: $n packets, $(tail -1 "$tmp/err")" ||
  bad "-c 25: rc $rc, $n packets: $(cat "$tmp/err")"
wait $tp # (a bare `wait` would wait for the agent too)
mode=$(stat -c %a "$tmp/c25.pcapng" 2>/dev/null)
tmps=$(ls -A "$tmp" | grep -c '\.tmp-')
[ "$mode" = 640 ] && [ "$tmps" = 0 ] && ok "-w FILE: mode 0640, renamed into place (no temporary file left)" ||
  bad "-w FILE: mode $mode, $tmps temporary files"

# --inner on the underlay, filtered on the inner packet
( sleep 1; traffic 30 ) &
tp=$!
timeout 60 "$podcap" sniff eth0 --inner -f 'tcp dst port 8080 and tcp[tcpflags] & tcp-syn != 0' -c 10 --server "$url" \
  -w "$tmp/inner.pcapng" 2>"$tmp/err"; rc=$?
wait $tp
got=$(tshark -r "$tmp/inner.pcapng" -T fields -e frame.protocols -e ip.src -e ip.dst -e tcp.dstport 2>/dev/null |
      sort | uniq -c | awk '{$1=$1; print}' | paste -sd'|')
[ $rc = 0 ] && [ "$got" = "10 eth:ethertype:ip:tcp 10.244.1.12 10.244.2.12 8080" ] &&
  ok "--inner on eth0: 10 SYNs of the pods, no VXLAN ($got)" || bad "--inner: rc $rc, got '$got': $(cat "$tmp/err")"
( sleep 1; traffic 30 ) &
tp=$!
timeout 60 "$podcap" sniff eth0 -f 'udp port 8472' -c 10 --server "$url" -w "$tmp/outer.pcapng" 2>/dev/null
wait $tp
nv=$(tshark -r "$tmp/outer.pcapng" -d udp.port==8472,vxlan -Y vxlan 2>/dev/null | wc -l)
[ "$nv" = 10 ] && ok "without --inner: VXLAN on 8472 as captured" || bad "outer: $nv VXLAN packets"

for i in $(seq 1 50); do [ "$(streams_open)" = 0 ] && break; sleep 0.1; done
sleep 0.5
fd1=$(nfds)
[ "$fd1" = "$fd0" ] && [ "$fdm" = "$fd0" ] &&
  ok "the agent's open files: $fd0 at the start, $fdm after 8 streams, $fd1 after 7 more" ||
  { bad "the agent's open files grew: $fd0 -> $fdm -> $fd1"; ls -l /proc/$agent/fd | tail -20; }
kill -INT $agent; wait $agent; st=$?; agent=""
if [ $st = 0 ] && ! grep -qE 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error' "$log"; then
  ok "agent ended cleanly (exit 0, no sanitizer report)"
else
  bad "agent exit $st"; grep -A20 -E 'ERROR: |runtime error' "$log" | head -40
fi
grep 'podcap run: final' "$log" | tr ' ' '\n' | grep -E '^stream' | paste -sd' ' | sed 's/^/   /'
exit $fail
