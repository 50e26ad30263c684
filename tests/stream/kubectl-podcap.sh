#!/usr/bin/env bash
# kubectl-podcap with the real kubectl against apiserver-replay.py (scenario
# kubectl-podcap: the lab's pods plus deploy/'s DaemonSet pods in namespace
# podcap, Running on pc-node1, Pending on pc-node2): the pod's node and that
# node's agent are found (`where`), unknown pods, bad names and a node without a
# ready agent are clean errors, and the port-forward's failure (the replay cannot
# do port-forward's SPDY/websocket upgrade) is reported and leaves nothing
# behind.  As root it also sniffs through --agent URL from a `podcap run` on lo
# whose inventory names lo as client-1's veth, then through the port-forward path
# with kubectl's port-forward and `get secret` stood in for (see below).
#   kubectl-podcap.sh SRCDIR PODCAP
set -u
src=${1:?usage: kubectl-podcap.sh SRCDIR PODCAP}; podcap=${2:?}
py=/usr/bin/python3
command -v kubectl >/dev/null || { echo "SKIP: no kubectl (Debian kubernetes-client)"; exit 77; }
plugin=$src/app/kubectl-podcap
tmp=$(mktemp -d /tmp/pc-kubectlpodcap.XXXXXX)
replay="" agent=""
cleanup() {
  [ -s "$tmp/pf.pid" ] && kill "$(cat "$tmp/pf.pid")" 2>/dev/null
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  [ -n "$replay" ] && kill "$replay" 2>/dev/null && wait "$replay" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

"$py" "$src/tests/kube/apiserver-replay.py" --recordings "$src/tests/kube/recordings" --port-file "$tmp/port" \
  2>"$tmp/replay.log" &
replay=$!
for i in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
curl -sf -X POST "http://127.0.0.1:$port/_control/scenario?name=kubectl-podcap" >/dev/null || { echo "FAIL - replay"; exit 1; }
cat >"$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: replay
  cluster:
    server: http://127.0.0.1:$port
contexts:
- name: replay
  context:
    cluster: replay
    user: tester
    namespace: default
current-context: replay
users:
- name: tester
  user:
    token: replay-token
KC
export HOME=$tmp/home # kubectl's cache, not the user's
kp() { "$plugin" "$@" --kubeconfig "$tmp/kubeconfig"; }
echo "# $(kubectl version --client 2>/dev/null | head -1)"

out=$(kp where client-1 2>&1); rc=$?
want=$'pod default/client-1\nnode pc-node1\nagent podcap/podcap-zmtts\nagent-address 172.18.0.11:7070'
[ $rc = 0 ] && [ "$out" = "$want" ] && ok "where client-1: $(echo "$out" | paste -sd' ')" || bad "where client-1: rc $rc: $out"
out=$(kp where coredns -n kube-system 2>&1); rc=$?
[ $rc = 0 ] && echo "$out" | grep -qx 'node pc-node1' && ok "where coredns -n kube-system: pc-node1" || bad "coredns: rc $rc: $out"
out=$(kp where default/web-2 2>&1); rc=$?
[ $rc = 1 ] && [ "$out" = "kubectl podcap: pod default/web-2 runs on node pc-node2, whose podcap agent podcap/podcap-tgzwt (Pending) is not running" ] &&
  ok "a node whose agent is Pending: exit 1, $out" || bad "web-2: rc $rc: $out"
out=$(kp where nosuch 2>&1); rc=$?
[ $rc = 1 ] && [ "$out" = "kubectl podcap: pod default/nosuch not found" ] && ok "unknown pod: exit 1, $out" || bad "nosuch: rc $rc: $out"
out=$(kp where client-1 -n shop 2>&1); rc=$?
[ $rc = 1 ] && [ "$out" = "kubectl podcap: pod shop/client-1 not found" ] && ok "pod in another namespace: exit 1" || bad "-n shop: rc $rc: $out"
out=$(kp where 'x"]}{.y' 2>&1); rc=$?
[ $rc = 1 ] && echo "$out" | grep -q "is not a pod name" && ok "a name that is not a pod name: exit 1, refused before kubectl" || bad "bad name: rc $rc: $out"
"$plugin" frob 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "unknown command: exit 2" || bad "frob: rc $rc"
out=$(kp top nosuch --by dport 2>&1); rc=$?
[ $rc = 1 ] && [ "$out" = "kubectl podcap: pod default/nosuch not found" ] && ok "top of an unknown pod: exit 1" || bad "top nosuch: rc $rc: $out"
"$plugin" top client-1 --by 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "top --by without a value: exit 2" || bad "top --by: rc $rc"
"$plugin" sniff client-1 --by app 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "sniff with a top option: exit 2" || bad "sniff --by: rc $rc"
# What the plugin asked: the pod by name, the agents by node and label.
reqs=$(curl -s "http://127.0.0.1:$port/_control/requests" | $py -c 'import json,sys
for r in json.load(sys.stdin):
    if r["path"].endswith("/pods"): print(r["path"], r["query"].get("fieldSelector", ""), r["query"].get("labelSelector", ""))' | sort -u)
echo "$reqs" | grep -qx '/api/v1/namespaces/default/pods metadata.name=client-1 ' &&
  echo "$reqs" | grep -qx '/api/v1/namespaces/podcap/pods spec.nodeName=pc-node1 app.kubernetes.io/name=podcap' &&
  ok "asked: the pod by metadata.name, the agent by spec.nodeName and label" || bad "requests: $reqs"

# sniff without --agent: kubectl port-forward, which the replay cannot serve
timeout 60 "$plugin" sniff client-1 --kubeconfig "$tmp/kubeconfig" -w "$tmp/x.pcapng" 2>"$tmp/err"; rc=$?
[ $rc = 1 ] && grep -q "kubectl port-forward to podcap/podcap-zmtts failed: .*(or give --agent URL)" "$tmp/err" &&
  ok "port-forward refused: exit 1, $(tail -1 "$tmp/err" | cut -c1-110)..." || bad "port-forward: rc $rc: $(cat "$tmp/err")"
pgrep -f "port-forward -n podcap pod/podcap-zmtts" >/dev/null && bad "a kubectl port-forward was left running" ||
  ok "no port-forward left behind"

# sniff through --agent URL from a live agent (root)
if [ "$(id -u)" != 0 ] || ! command -v tshark >/dev/null; then
  echo "ok - # SKIP the live sniff: needs root and tshark"
  exit $fail
fi
cat >"$tmp/pods.json" <<'EOF'
{"pods": [{"name": "client-1", "namespace": "default", "host_veth": "lo", "ips": ["127.0.0.1"]}]}
EOF
"$podcap" run --backend pcap --iface lo --db "$tmp/f.db" --inventory "$tmp/pods.json" \
  --listen 127.0.0.1:0 --stats-interval 0 --idle-timeout 1 >"$tmp/agent.log" 2>&1 &
agent=$!
for i in $(seq 1 100); do grep -q 'capturing on lo' "$tmp/agent.log" && grep -q 'API and web page on' "$tmp/agent.log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/agent.log" | head -1)
[ -n "$url" ] || { cat "$tmp/agent.log"; bad "agent did not start"; exit 1; }
sleep 1.2
( sleep 1; $py -c 'import socket,time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(200):
    s.sendto(b"kubectl-podcap %d" % i, ("127.0.0.1", 9999)); time.sleep(0.005)' ) &
sp=$!
PODCAP=$podcap timeout 60 "$plugin" sniff client-1 --kubeconfig "$tmp/kubeconfig" --agent "$url" \
  -f 'udp port 9999' -c 20 -w "$tmp/s.pcapng" 2>"$tmp/err"; rc=$?
wait $sp
n=$(tshark -r "$tmp/s.pcapng" -Y 'udp.dstport == 9999' 2>/dev/null | wc -l)
[ $rc = 0 ] && [ "$n" = 20 ] && ok "sniff client-1 --agent URL -c 20: $n packets; $(tail -1 "$tmp/err")" ||
  bad "sniff: rc $rc, $n packets: $(cat "$tmp/err")"
grep -q "default/client-1 runs on node pc-node1; its agent is podcap/podcap-zmtts" "$tmp/err" && ok "said where" || bad "no where line"
# top of the pod's flows from the same agent: its UDP flow to 9999 (recorded once
# idle for a second: the agent runs with --idle-timeout 1)
for i in $(seq 1 30); do
  PODCAP=$podcap "$plugin" top client-1 --kubeconfig "$tmp/kubeconfig" --agent "$url" --by dport,src_pod \
    --metric packets --json proto == udp >"$tmp/top.json" 2>"$tmp/err"; rc=$?
  [ $rc = 0 ] && $py -c 'import json,sys; j=json.load(open(sys.argv[1])); sys.exit(0 if any(r["key"]=="9999" for r in j["tops"][0]["rows"]) else 1)' "$tmp/top.json" && break
  sleep 0.5
done
$py - "$tmp/top.json" <<'PY' && ok "top client-1 --by dport,src_pod proto == udp: $(head -c 200 "$tmp/top.json")" || bad "top: rc $rc: $(cat "$tmp/top.json" "$tmp/err")"
import json, sys
j = json.load(open(sys.argv[1]))
d, p = ({r["key"]: r["value"] for r in t["rows"]} for t in j["tops"])
sys.exit(0 if d.get("9999", 0) >= 200 and p.get("default/client-1", 0) >= 200 and j["complete"] else 1)
PY
# a filter cannot widen the answer past the pod: an unbalanced ")" is refused (exit 2)
PODCAP=$podcap "$plugin" top client-1 --kubeconfig "$tmp/kubeconfig" --agent "$url" -- 'dport == 1) or (1' \
  >"$tmp/out" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "closes nothing" "$tmp/err" && ok "top with 'dport == 1) or (1': exit 2, not every flow" ||
  bad "unbalanced filter: rc $rc: $(cat "$tmp/out" "$tmp/err")"

# The port-forward path and the token from the Secret, with kubectl's two calls the
# replay cannot answer stood in for: a wrapper runs the real kubectl for everything
# but `get secret` (answers the token, base64, as the API would) and `port-forward`
# (prints kubectl's "Forwarding from 127.0.0.1:PORT -> 7070" line and relays TCP to
# the agent).  The agent now asks for that token.
kill -INT $agent; wait $agent; agent=""
od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$tmp/token"
"$podcap" run --backend pcap --iface lo --db "$tmp/f2.db" --inventory "$tmp/pods.json" \
  --listen 127.0.0.1:0 --token-file "$tmp/token" --stats-interval 0 >"$tmp/agent2.log" 2>&1 &
agent=$!
for i in $(seq 1 100); do grep -q 'capturing on lo' "$tmp/agent2.log" && grep -q 'API and web page on' "$tmp/agent2.log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/agent2.log" | head -1)
sleep 1.2
cat >"$tmp/relay.py" <<'PY'
import socket, sys, threading
port = int(sys.argv[1])
ls = socket.socket(); ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
ls.bind(("127.0.0.1", 0)); ls.listen(16)
print("Forwarding from 127.0.0.1:%d -> 7070" % ls.getsockname()[1], flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
while True:
    c, _ = ls.accept()
    u = socket.create_connection(("127.0.0.1", port))
    threading.Thread(target=pipe, args=(c, u), daemon=True).start()
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
PY
cat >"$tmp/kubectl" <<SH
#!/bin/bash
case " \$* " in
  *" port-forward "*) echo "\$*" >>"$tmp/pf-args"; echo \$\$ >"$tmp/pf.pid"; exec $py "$tmp/relay.py" ${url##*:} ;;
  *" get secret "*) echo "\$*" >>"$tmp/secret-args"; base64 -w0 <"$tmp/token"; exit 0 ;;
esac
exec kubectl "\$@"
SH
chmod +x "$tmp/kubectl"
( sleep 1.5; $py -c 'import socket,time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(300):
    s.sendto(b"kubectl-podcap %d" % i, ("127.0.0.1", 9999)); time.sleep(0.005)' ) &
sp=$!
KUBECTL=$tmp/kubectl PODCAP=$podcap timeout 60 "$plugin" sniff client-1 --kubeconfig "$tmp/kubeconfig" \
  -f 'udp port 9999' -c 20 -w "$tmp/pf.pcapng" 2>"$tmp/err"; rc=$?
wait $sp
n=$(tshark -r "$tmp/pf.pcapng" -Y 'udp.dstport == 9999' 2>/dev/null | wc -l)
[ $rc = 0 ] && [ "$n" = 20 ] && ok "sniff through the port-forward, with the Secret's token: $n packets" ||
  bad "port-forward sniff: rc $rc, $n packets: $(cat "$tmp/err")"
grep -q -- "port-forward -n podcap pod/podcap-zmtts :7070 --address 127.0.0.1" "$tmp/pf-args" &&
  ok "port-forward asked: $(cat "$tmp/pf-args")" || bad "port-forward args: $(cat "$tmp/pf-args" 2>/dev/null)"
grep -q -- "get secret -n podcap podcap-api-token" "$tmp/secret-args" && ok "token read from Secret podcap/podcap-api-token" ||
  bad "secret args: $(cat "$tmp/secret-args" 2>/dev/null)"
pfpid=$(cat "$tmp/pf.pid" 2>/dev/null)
if [ -n "$pfpid" ] && kill -0 "$pfpid" 2>/dev/null; then bad "the port-forward was left running"; kill "$pfpid"
else ok "the port-forward ended with the sniff"; fi
ls "${TMPDIR:-/tmp}"/kubectl-podcap.* >/dev/null 2>&1 && bad "a kubectl-podcap temporary directory (token) was left" ||
  ok "no temporary directory (token) left"

# Ctrl-C at a terminal: SIGINT to the whole foreground process group (the plugin,
# podcap sniff, the port-forward), sent by a helper that starts the plugin as a
# process group of its own (a background job of this script would ignore SIGINT).
rm -f "$tmp/pf.pid"
( for i in $(seq 1 600); do $py -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"ctrl-c", ("127.0.0.1", 9999))'; sleep 0.01; done ) &
sp=$!
KUBECTL=$tmp/kubectl PODCAP=$podcap $py - "$plugin" sniff client-1 --kubeconfig "$tmp/kubeconfig" -f 'udp port 9999' \
  -w "$tmp/int.pcapng" 2>"$tmp/err" <<'PY'
import os, signal, subprocess, sys, time
p = subprocess.Popen(sys.argv[1:], start_new_session=True)
time.sleep(3)
os.killpg(p.pid, signal.SIGINT)
try:
    sys.exit(p.wait(timeout=30))
except subprocess.TimeoutExpired:
    os.killpg(p.pid, signal.SIGKILL)
    sys.exit(99)
PY
rc=$?
kill $sp 2>/dev/null; wait $sp 2>/dev/null
n=$(tshark -r "$tmp/int.pcapng" 2>/dev/null | wc -l)
[ $rc = 0 ] && [ "$n" -gt 0 ] && grep -q "; stopped$" "$tmp/err" &&
  ok "Ctrl-C: exit 0, a valid file of $n packets; $(tail -1 "$tmp/err")" || bad "Ctrl-C: rc $rc, $n packets: $(cat "$tmp/err")"
pfpid=$(cat "$tmp/pf.pid" 2>/dev/null)
[ -n "$pfpid" ] && ! kill -0 "$pfpid" 2>/dev/null && ok "Ctrl-C: the port-forward ended too" ||
  bad "Ctrl-C: port-forward ${pfpid:-never started} still there"

kill -INT $agent; wait $agent; st=$?; agent=""
[ $st = 0 ] && ok "agent exit 0" || bad "agent exit $st"
exit $fail
