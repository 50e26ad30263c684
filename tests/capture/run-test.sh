#!/usr/bin/env bash
# podcap run on a lab node: captures the pods' veths, overlays and NIC, stores flows
# with the pod names, stops cleanly on SIGTERM leaving no tc program behind, and
# falls back to libpcap with a reason when BPF is not allowed.
# usage: run-test.sh SRCDIR PODCAP
SRC=$1 PODCAP=$2
. "$SRC/tests/capture/lib.sh"
require_root run-test
command -v sqlite3 >/dev/null || { echo "SKIP: run-test needs the sqlite3 CLI"; exit 77; }
LAB=$SRC/lab/lab
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$LAB" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
TMP=$(mktemp -d /tmp/pc-runtest.XXXXXX)
export PODCAP_LAB_INVENTORY=$TMP/pods.json
cleanup() {
  set +e # a cleanup step that finds nothing to clean must not fail the test
  [ -n "${BG_PID:-}" ] && kill "$BG_PID" 2>/dev/null
  ip netns del pc-tlate-$$ 2>/dev/null
  "$LAB" down >/dev/null 2>&1
  rm -rf "$TMP"
  return 0
}
trap cleanup EXIT
"$LAB" down >/dev/null
"$LAB" up >/dev/null || fail "lab up"

"$PODCAP" run --db "$TMP/flows.db" --netns pc-node1 --inventory "$PODCAP_LAB_INVENTORY" \
  --stats-interval 1 >"$TMP/run.out" 2>&1 &
BG_PID=$!
for i in $(seq 1 200); do
  grep -q 'podcap run: backend' "$TMP/run.out" && break
  kill -0 "$BG_PID" 2>/dev/null || { cat "$TMP/run.out"; fail "podcap run exited early"; }
  sleep 0.05
done
# A pod that starts after the agent: its veth (a name no CNI rule knows) is named
# from the rewritten inventory.
ip netns add pc-tlate-$$
/usr/bin/python3 - "$PODCAP_LAB_INVENTORY" <<'PY'
import json, os, sys
p = sys.argv[1]
d = json.load(open(p))
d["pods"].append({"name": "late-1", "namespace": "batch", "node": "pc-node1", "host_veth": "pod0late",
                  "ips": ["10.244.1.60"]})
json.dump(d, open(p + ".tmp", "w"))
os.rename(p + ".tmp", p)
PY
ip -n pc-node1 link add pod0late type veth peer name eth0 netns pc-tlate-$$
ip -n pc-node1 link set pod0late master cni0 up
"$LAB" traffic 3 >/dev/null
ip netns del pc-tlate-$$
for i in $(seq 1 50); do grep -q 'pod0late went away' "$TMP/run.out" && break; sleep 0.1; done
kill -TERM "$BG_PID"
wait "$BG_PID" || { cat "$TMP/run.out"; fail "podcap run did not exit 0 on SIGTERM"; }
BG_PID=
cat "$TMP/run.out" | grep -E 'final|capturing' | sed 's/^/  /'
final=$(grep 'podcap run: final' "$TMP/run.out") || fail "no final counters"
get() { echo "$final" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
[ "$(get backend)" = ebpf ] || fail "ran on $(get backend)"
[ "$(get received)" -gt 0 ] || fail "nothing received"
[ "$(get bad_records)" = 0 ] || fail "bad ring records"
[ "$(get kernel_counted_pkts)" -ge "$(get received)" ] || fail "kernel counted fewer than were handed up"
grep -q 'capturing on veth.*pod default/web-1' "$TMP/run.out" || fail "web-1's veth not captured by name"
grep -q 'capturing on flannel.1 (overlay' "$TMP/run.out" || fail "flannel.1 not captured"
grep -q 'capturing on pod0late (pod-veth, veth, pod batch/late-1)' "$TMP/run.out" || fail "late pod not captured by name"
grep -q 'pod0late went away' "$TMP/run.out" || fail "late pod's veth removal not noticed"
grep -q 'stats ' "$TMP/run.out" || fail "no periodic counters"
if ip netns exec pc-node1 tc qdisc show | grep -q clsact; then fail "clsact qdisc left behind"; fi
pass "ebpf run: $(get received) packets, $(get records) flow records, clean stop"

# The flows are in the database, named by pod and seen on several observation points.
n=$(sqlite3 "$TMP/flows.db" "select count(*) from flows" 2>/dev/null || echo 0)
[ "$n" -gt 0 ] || fail "no flows stored"
# (into a file first: grep -q closing the pipe early would fail the pipeline)
"$PODCAP" flows --db "$TMP/flows.db" --app HTTP >"$TMP/http.txt"
grep -q '10.244.1.10:8080' "$TMP/http.txt" ||
  { "$PODCAP" flows --db "$TMP/flows.db" --port 8080; fail "no HTTP flow to web-1"; }
pass "flows stored: $n"

# Without CAP_BPF the agent says why and runs on libpcap.
ip netns exec pc-node1 capsh --drop=cap_bpf,cap_sys_admin,cap_perfmon -- -c \
  "$PODCAP run --db $TMP/fb.db --iface eth0 --duration 2 --stats-interval 0" >"$TMP/fb.out" 2>&1 ||
  { cat "$TMP/fb.out"; fail "fallback run failed"; }
grep -q 'eBPF backend unavailable (.*); using libpcap' "$TMP/fb.out" || { cat "$TMP/fb.out"; fail "no fallback reason"; }
grep -q 'final.*backend=pcap' "$TMP/fb.out" || fail "fallback did not run on libpcap"
pass "fallback to libpcap: $(grep -o 'unavailable (.*)' "$TMP/fb.out")"
