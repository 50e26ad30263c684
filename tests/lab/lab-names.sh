#!/usr/bin/env bash
# Issue 14 on the lab (root; skips otherwise): the agent on node 1 names both ends
# of every flow.  Run twice, with each names source:
#   1. the lab's inventory file (--inventory);
#   2. the Kubernetes API: the replay server (tests/kube) serving `lab/lab k8s-json`
#      (the lab as PodList/ServiceList/EndpointSliceList), --kubeconfig; then the
#      server turns bad (garbage, 5xx) and the agent keeps capturing with the
#      names it has, and says so (log, stats line).
# Each run makes, from client-1 (node 1): HTTP to web-2 across nodes (flannel.1),
# DNS through the kube-dns ClusterIP (DNAT to coredns), HTTP through the web
# ClusterIP; and from node 2 itself an HTTP request to node 1's NodePort 30080.
# `podcap flows` must show: pod names at both ends of the cross-node HTTP (on the
# veth and encapsulated on the underlay, with the tunnel's nodes), the DNS flow
# with Service kube-system/kube-dns:53 and backend pod coredns (before DNAT on the
# client's veth, after it on coredns's), and the NodePort request from node
# pc-node2 to Service default/web:80 and a web pod.
#   lab-names.sh SRCDIR PODCAP
set -u
src=${1:?usage: lab-names.sh SRCDIR PODCAP}; podcap=${2:?}
if [ "$(id -u)" != 0 ]; then echo "SKIP: lab-names needs root (network namespaces, BPF, conntrack)"; exit 77; fi
for t in curl dig /usr/bin/python3; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
lab=$src/lab/lab
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
tmp=$(mktemp -d /tmp/pc-labnames.XXXXXX)
export PODCAP_LAB_INVENTORY=$tmp/pods.json
agent="" replay=""
cleanup() {
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  [ -n "$replay" ] && kill "$replay" 2>/dev/null && wait "$replay" 2>/dev/null
  "$lab" down >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

"$lab" down >/dev/null 2>&1
"$lab" up >/dev/null || { echo "FAIL - lab up"; exit 1; }

# count DB FILTER: flows matching the filter
count() {
  "$podcap" flows --db "$1" --json "$2" --limit 1000 2>"$tmp/flows.err" |
    /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' 2>/dev/null || echo -1
}
expect() { # DB WHAT FILTER
  local n; n=$(count "$1" "$3")
  if [ "$n" -ge 1 ] 2>/dev/null; then ok "$2 ($n flows: $3)"; else bad "$2: no flow matches '$3' ($(cat "$tmp/flows.err"))"; fi
}

start_agent() { # DB LOG ARGS...
  local db=$1 log=$2; shift 2
  "$podcap" run --netns pc-node1 --db "$db" --inventory "$PODCAP_LAB_INVENTORY" --idle-timeout 5 "$@" >"$log" 2>&1 &
  agent=$!
  for i in $(seq 1 150); do grep -q 'capturing on eth0' "$log" && break; sleep 0.1; done
  grep -q 'capturing on eth0' "$log" || { cat "$log"; echo "FAIL - agent did not start"; exit 1; }
  sleep 0.5
}
stop_agent() { # LOG
  kill -TERM "$agent"; wait "$agent"; local rc=$?; agent=""
  [ $rc = 0 ] && ok "agent stopped cleanly" || { bad "agent exit $rc"; cat "$1"; }
}

traffic() { # TAG: ports differ per round so rounds are told apart
  local p=$1
  ip netns exec pc-client-1 curl -s -m 3 -o /dev/null --local-port $((p + 1)) http://10.244.2.12:8080/ || bad "HTTP client-1 -> web-2 failed"
  ip netns exec pc-client-1 dig +short +time=2 +tries=1 -b 10.244.1.12#$((p + 2)) @10.96.0.10 web.default.svc.cluster.local >/dev/null || bad "DNS via 10.96.0.10 failed"
  ip netns exec pc-client-1 curl -s -m 3 -o /dev/null --local-port $((p + 3)) http://10.96.0.80/ || bad "HTTP via ClusterIP failed"
  ip netns exec pc-node2 curl -s -m 3 -o /dev/null --local-port $((p + 4)) http://172.18.0.11:30080/ || bad "NodePort from node 2 failed"
  sleep 1
}

checks() { # DB SOURCE PORTBASE
  local db=$1 what=$2 p=$3
  expect "$db" "$what: cross-node HTTP named at both ends on client-1's veth" \
    "src_pod == default/client-1 and dst_pod == default/web-2 and sport == $((p + 1)) and obs.pod == client-1"
  expect "$db" "$what: the same HTTP on the underlay, tunnel between the nodes" \
    "src_pod == client-1 and dst_pod == web-2 and sport == $((p + 1)) and tunnel == vxlan and outer.node == pc-node1 and outer.node == pc-node2"
  expect "$db" "$what: DNS to the ClusterIP, before DNAT: Service and backend pod" \
    "dst == 10.96.0.10 and sport == $((p + 2)) and src_pod == client-1 and service == kube-system/kube-dns:53 and dst_pod == kube-system/coredns"
  expect "$db" "$what: DNS after DNAT on coredns's veth: the same Service" \
    "dst == 10.244.1.11 and sport == $((p + 2)) and src_pod == client-1 and service == kube-dns:53 and obs.pod == coredns"
  expect "$db" "$what: HTTP through the web ClusterIP: Service, labels of the backend" \
    "dst == 10.96.0.80 and sport == $((p + 3)) and service == default/web:80 and dst_label.app == web and src_label.app == client"
  expect "$db" "$what: NodePort request from node 2: the node, the Service, a web pod" \
    "dport == 30080 and sport == $((p + 4)) and src_node == pc-node2 and service == default/web:80 and dst_pod in [web-1, web-2]"
}

# ---- 1. the inventory ---------------------------------------------------------
db1=$tmp/inv.db
start_agent "$db1" "$tmp/run1.out" --stats-interval 0
traffic 41000
stop_agent "$tmp/run1.out"
grep -q 'names: source=inventory' "$tmp/run1.out" && ok "names from the inventory" || bad "no names line"
checks "$db1" inventory 41000
echo "--- podcap flows (inventory), the lab's traffic:"
"$podcap" flows --db "$db1" 'sport >= 41000 and sport < 41010 and not proto == icmpv6' --limit 40

# ---- 2. the API (replay of lab/lab k8s-json), then a bad API ------------------
rec=$tmp/recordings
cp -r "$src/tests/kube/recordings" "$rec"
"$lab" k8s-json pods >"$rec/pods-list.json" &&
  "$lab" k8s-json services >"$rec/services-list.json" &&
  "$lab" k8s-json endpointslices >"$rec/endpointslices-list.json" || { echo "FAIL - lab k8s-json"; exit 1; }
# The agent lives in node 1's namespace: the server listens on that loopback.
ip netns exec pc-node1 ip link set lo up
ip netns exec pc-node1 /usr/bin/python3 "$src/tests/kube/apiserver-replay.py" --recordings "$rec" \
  --port-file "$tmp/port" --scenario quiet 2>"$tmp/replay.log" &
replay=$!
for i in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
[ -s "$tmp/port" ] || { cat "$tmp/replay.log"; echo "FAIL - replay server"; exit 1; }
port=$(cat "$tmp/port")
cat >"$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- cluster: {server: "http://127.0.0.1:$port"}
  name: lab
contexts:
- context: {cluster: lab, user: lab}
  name: lab
current-context: lab
users:
- name: lab
  user: {token: lab-token}
KC
db2=$tmp/api.db
start_agent "$db2" "$tmp/run2.out" --kubeconfig "$tmp/kubeconfig" --stats-interval 1
for i in $(seq 1 50); do grep -q 'names: source=api synced=1' "$tmp/run2.out" && break; sleep 0.1; done
grep -q 'names: source=api synced=1 connected=1 stale=0' "$tmp/run2.out" && ok "API source synced" ||
  bad "API source not synced: $(grep names: "$tmp/run2.out" | tail -1)"
traffic 42000
# The API server turns bad: a garbage watch event, then garbage lists (HTML from a
# proxy), so every relist fails.  The agent must keep capturing and naming.
ip netns exec pc-node1 curl -s -X POST "http://127.0.0.1:$port/_control/scenario?name=garbage" >/dev/null
for i in $(seq 1 100); do grep -q 'stale=1' "$tmp/run2.out" && break; sleep 0.1; done
grep -q 'stale=1' "$tmp/run2.out" && ok "stats line says the names are stale" || bad "never stale"
grep -q 'podcap run: kubernetes: .*\(unreadable\|not JSON\|failed\)' "$tmp/run2.out" &&
  ok "the log says why: $(grep -m1 'podcap run: kubernetes: .*\(unreadable\|not JSON\|failed\)' "$tmp/run2.out")" ||
  bad "no kubernetes error in the log"
ip netns exec pc-node1 curl -s -X POST "http://127.0.0.1:$port/_control/scenario?name=list-500" >/dev/null
sleep 1
traffic 43000
grep 'names:' "$tmp/run2.out" | tail -1 | grep -q 'last_error=' && ok "stats line carries the last error" ||
  bad "no last_error: $(grep names: "$tmp/run2.out" | tail -1)"
stop_agent "$tmp/run2.out"
checks "$db2" "api" 42000
checks "$db2" "api gone bad (names kept)" 43000
echo "--- podcap flows (API, then a bad API):"
"$podcap" flows --db "$db2" 'sport >= 43000 and sport < 43010' --limit 40
grep -E 'kubernetes:|names:' "$tmp/run2.out" | sed -n '1,12p'

[ $fail = 0 ] && echo "lab-names: all passed" || echo "lab-names: FAILED"
exit $fail
