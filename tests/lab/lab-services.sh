#!/usr/bin/env bash
# Issue 14, the lab's part.  After `lab/lab up`: every pod's veth was made by a CNI
# plugin (bridge + host-local on node1, ptp + host-local on node2) and the inventory
# names what `ip link` shows; cross-node HTTP works over both overlays; the Services
# kube-proxy's nftables mode would make work (DNS via the kube-dns ClusterIP over UDP
# and TCP, HTTP via the web ClusterIP to both backends, the NodePort on each node);
# the nft ruleset has kube-proxy's structure; conntrack shows the DNAT'ed connections;
# the inventory and `lab/lab k8s-json` describe the same pods and Services.  A failed
# `up` cleans up, `up` twice is a no-op, `down` leaves no namespace, nft table,
# host-local state, resolv.conf or process behind.
#   lab-services.sh SRCDIR
set -u
src=${1:?usage: lab-services.sh SRCDIR}
if [ "$(id -u)" != 0 ]; then echo "SKIP: lab-services needs root (network namespaces, nftables)"; exit 77; fi
for t in nft conntrack curl dig getent; do
  command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }
done
for p in bridge ptp host-local loopback; do
  [ -x /usr/lib/cni/$p ] || { echo "SKIP: /usr/lib/cni/$p missing (containernetworking-plugins)"; exit 77; }
done
lab=$src/lab/lab
# The whole test holds the lab lock (re-entrant when the caller already holds it).
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
checks="/usr/bin/python3 $src/tests/lab/lab_checks.py"
state=/run/podcap/lab
tmp=$(mktemp -d /tmp/pc-labsvc.XXXXXX)
export PODCAP_LAB_INVENTORY=$tmp/pods.json
trap '"$lab" down >/dev/null 2>&1; rm -rf "$tmp"' EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }
LAB_NS="pc-node1 pc-node2 pc-web-1 pc-web-2 pc-coredns pc-client-1 pc-client-2 pc-tls-1 pc-api-1"
c1() { ip netns exec pc-client-1 "$@"; }
c2() { ip netns exec pc-client-2 "$@"; }

# Nothing of the lab is left: namespaces, state (host-local leases, CNI cache),
# inventory, the pods' resolv.conf, processes.
nothing_left() { # what
  local left="" ns
  for ns in $LAB_NS; do [ -e /run/netns/$ns ] && left="$left netns:$ns"; done
  [ -e "$state" ] && left="$left $state"
  [ -e "$PODCAP_LAB_INVENTORY" ] && left="$left inventory"
  for ns in $LAB_NS; do [ -e /etc/netns/$ns ] && left="$left /etc/netns/$ns"; done
  pgrep -f "$state/" >/dev/null && left="$left processes:$(pgrep -f "$state/" | tr '\n' ' ')"
  if [ -z "$left" ]; then ok "$1: nothing left"; else bad "$1: left behind:$left"; fi
}

"$lab" down >/dev/null 2>&1

# A failing `up` (after the CNI ADDs, before Services) removes what it made.
PODCAP_LAB_TEST_FAIL=after-cni "$lab" up >"$tmp/fail.out" 2>&1
rc=$?
if [ $rc != 0 ] && grep -q 'failing on purpose' "$tmp/fail.out" && grep -q 'cleaning up' "$tmp/fail.out"; then
  ok "up with an injected failure: exit $rc, cleaned up"
else
  bad "up with an injected failure: exit $rc: $(cat "$tmp/fail.out")"
fi
nothing_left "failed up"

"$lab" up >"$tmp/up.out" 2>&1 || { cat "$tmp/up.out"; echo "FAIL - lab up"; exit 1; }
sed 's/^/   /' "$tmp/up.out"
"$lab" up | grep -q 'already up' && ok "second up is a no-op" || bad "second up was not a no-op"
cp "$PODCAP_LAB_INVENTORY" "$tmp/inventory-copy.json"

# ---- CNI ------------------------------------------------------------------------
$checks cni "$PODCAP_LAB_INVENTORY" "$state" || fail=1
out=$("$lab" cni-check 2>&1); rc=$?
n=$(echo "$out" | grep -c ': ok$')
[ $rc = 0 ] && [ "$n" = 7 ] && ok "CNI CHECK with the cached prevResult: $n pods ok" || bad "cni-check: $out"
$checks inventory "$PODCAP_LAB_INVENTORY" || fail=1

# ---- pod to pod across both overlays ------------------------------------------
tx() { ip netns exec pc-node1 cat /sys/class/net/$1/statistics/tx_packets; }
for t in "flannel.1 10.244.2.12 web-2" "vxlan0 10.244.3.10 api-1"; do
  set -- $t
  before=$(tx $1)
  body=$(c1 curl -s -m 3 http://$2:8080/)
  after=$(tx $1)
  [ "$body" = "hello from $3" ] && [ "$after" -gt "$before" ] &&
    ok "client-1 -> $3 ($2) over $1: '$body', $1 tx $before -> $after" ||
    bad "client-1 -> $3 over $1: body '$body', $1 tx $before -> $after"
done

# ---- DNS through the kube-dns ClusterIP --------------------------------------------
a=$(c1 dig +short +time=2 +tries=2 @10.96.0.10 web.default.svc.cluster.local)
[ "$a" = 10.96.0.80 ] && ok "dig @10.96.0.10 web.default.svc.cluster.local (UDP, node1) = $a" || bad "DNS UDP via ClusterIP: '$a'"
a=$(c2 dig +short +tcp +time=2 +tries=2 @10.96.0.10 kube-dns.kube-system.svc.cluster.local)
[ "$a" = 10.96.0.10 ] && ok "dig +tcp @10.96.0.10 kube-dns.kube-system... (TCP, node2 -> node1) = $a" || bad "DNS TCP via ClusterIP: '$a'"
a=$(c2 dig +time=2 +tries=2 @10.96.0.10 nosuch.default.svc.cluster.local | grep -o 'status: [A-Z]*')
[ "$a" = "status: NXDOMAIN" ] && ok "unknown name: $a" || bad "unknown name: '$a'"
a=$(c2 getent hosts web | awk '{print $1}')
[ "$a" = 10.96.0.80 ] && ok "pod resolv.conf (search default.svc.cluster.local, nameserver 10.96.0.10): web -> $a" || bad "getent hosts web in client-2: '$a'"

# ---- HTTP through the web ClusterIP: both backends --------------------------------
: >"$tmp/bodies"
for i in $(seq 1 30); do c1 curl -s -m 3 http://10.96.0.80/ >>"$tmp/bodies"; done
n1=$(grep -c 'hello from web-1' "$tmp/bodies"); n2=$(grep -c 'hello from web-2' "$tmp/bodies")
[ $((n1 + n2)) = 30 ] && [ "$n1" -gt 0 ] && [ "$n2" -gt 0 ] &&
  ok "30 requests to 10.96.0.80:80 from client-1: web-1 $n1, web-2 $n2 (numgen random)" ||
  bad "ClusterIP load balancing: web-1 $n1, web-2 $n2 of 30"
body=$(c2 curl -s -m 3 http://api/)
[ "$body" = "hello from api-1" ] && ok "client-2 -> http://api/ (DNS, then ClusterIP 10.96.0.90): '$body'" || bad "api by name: '$body'"
body=$(c1 curl -s -m 3 http://10.96.0.90/)
[ "$body" = "hello from api-1" ] && ok "client-1 -> 10.96.0.90 (DNAT on node1, then vxlan0): '$body'" || bad "api ClusterIP from node1: '$body'"
body=$(ip netns exec pc-web-1 curl -s -m 3 http://10.96.0.80/ http://10.96.0.80/ http://10.96.0.80/ http://10.96.0.80/)
echo "$body" | grep -q . && ! echo "$body" | grep -qv 'hello from web-' && ok "web-1 -> its own Service (hairpin)" || bad "hairpin: '$body'"

# ---- NodePort 30080 ----------------------------------------------------------------
for t in "pc-client-2 172.18.0.11" "pc-node2 172.18.0.11" "pc-node1 172.18.0.12" "pc-client-1 172.18.0.12" "pc-node1 172.18.0.11"; do
  set -- $t
  body=$(ip netns exec $1 curl -s -m 3 http://$2:30080/)
  case $body in "hello from web-"?) ok "$1 -> NodePort $2:30080: '$body'" ;; *) bad "$1 -> $2:30080: '$body'" ;; esac
done

# ---- kube-proxy's nftables structure --------------------------------------------
for node in pc-node1 pc-node2; do
  ip netns exec $node nft list table ip kube-proxy >"$tmp/nft-$node.txt" 2>&1 || bad "$node: no table ip kube-proxy"
  before=$fail
  websvc=$($checks chain service default/web/tcp/http)
  webext=$($checks chain external default/web/tcp/http)
  dnsudp=$($checks chain service kube-system/kube-dns/udp/dns)
  ep1=$($checks chain endpoint default/web/tcp/http__10.244.1.10/8080)
  ep2=$($checks chain endpoint default/web/tcp/http__10.244.2.12/8080)
  nodeip=172.18.0.11; [ $node = pc-node2 ] && nodeip=172.18.0.12
  for want in "chain $websvc {" "chain $webext {" "chain $ep1 {" "chain $ep2 {" \
      "10.96.0.80 . tcp . 80 : goto $websvc" "10.96.0.10 . udp . 53 : goto $dnsudp" \
      "tcp . 30080 : goto $webext" "numgen random mod 2 vmap { 0 : goto $ep1, 1 : goto $ep2 }" \
      "meta l4proto tcp dnat to 10.244.1.10:8080" "meta l4proto tcp dnat to 10.244.2.12:8080" \
      "meta l4proto udp dnat to 10.244.1.11:53" "ip daddr 10.96.0.80 ip saddr != 10.244.0.0/16 jump mark-for-masquerade" \
      "elements = { $nodeip }" "ip daddr . meta l4proto . th dport vmap @service-ips" \
      "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports" "masquerade fully-random" \
      "type nat hook prerouting priority dstnat"; do
    grep -qF -- "$want" "$tmp/nft-$node.txt" || bad "$node: kube-proxy table lacks '$want'"
  done
  [ $fail = "$before" ] && ok "$node: table ip kube-proxy has $(grep -c 'chain ' "$tmp/nft-$node.txt") chains, e.g. $websvc (2 endpoints, numgen), $webext (NodePort)"
done
ip netns exec pc-node1 nft list table ip flannel-ipv4 >/dev/null 2>&1 && ip netns exec pc-node2 nft list table ip calico >/dev/null 2>&1 &&
  ok "pod egress masquerade tables: flannel-ipv4 on node1, calico on node2" || bad "egress masquerade tables missing"

# ---- conntrack: the DNAT'ed connections -------------------------------------------
ip netns exec pc-node1 conntrack -F >/dev/null 2>&1
ip netns exec pc-node2 conntrack -F >/dev/null 2>&1
c1 curl -s -m 3 -o /dev/null --local-port 41080 http://10.96.0.80/
c2 dig +short +time=2 +tries=2 @10.96.0.10 tls-1.default.svc.cluster.local >/dev/null
c2 curl -s -m 3 -o /dev/null --local-port 41081 http://172.18.0.11:30080/
ct() { ip netns exec "$@" 2>/dev/null; }
e=$(ct pc-node1 conntrack -L -p tcp --orig-src 10.244.1.12 --orig-dst 10.96.0.80 --orig-port-src 41080)
echo "$e" | grep -Eq 'dport=80 src=10\.244\.(1\.10|2\.12) dst=10\.244\.1\.12 sport=8080 dport=41080' &&
  ok "node1 conntrack, ClusterIP: $(echo "$e" | head -1)" || bad "node1 conntrack for client-1 -> 10.96.0.80: '$e'"
e=$(ct pc-node2 conntrack -L -p udp --orig-src 10.244.2.11 --orig-dst 10.96.0.10)
echo "$e" | grep -Eq 'dport=53 src=10\.244\.1\.11 dst=10\.244\.2\.11 sport=53' &&
  ok "node2 conntrack, kube-dns ClusterIP: $(echo "$e" | head -1)" || bad "node2 conntrack for DNS via 10.96.0.10: '$e'"
e=$(ct pc-node2 conntrack -L -p tcp --orig-src 10.244.2.11 --orig-port-src 41081)
echo "$e" | grep -Eq 'dst=172\.18\.0\.11 sport=41081 dport=30080 src=172\.18\.0\.11 dst=172\.18\.0\.12 sport=30080' &&
  ok "node2 conntrack, pod egress SNAT to the node: $(echo "$e" | head -1)" || bad "node2 conntrack for client-2 -> NodePort: '$e'"
e=$(ct pc-node1 conntrack -L -p tcp --orig-src 172.18.0.12 --orig-dst 172.18.0.11)
echo "$e" | grep -Eq 'dport=30080 src=10\.244\.(1\.10|2\.12) dst=10\.244\.1\.[01] sport=8080' &&
  ok "node1 conntrack, NodePort DNAT + masquerade: $(echo "$e" | grep 'dport=30080' | head -1)" || bad "node1 conntrack for the NodePort: '$e'"

# ---- inventory and the Kubernetes API view ------------------------------------------
$checks k8s "$PODCAP_LAB_INVENTORY" "$lab" || fail=1
if command -v kubectl >/dev/null; then
  # kubectl decodes the List offline (--local); it does not validate field types.
  n=$("$lab" k8s-json | kubectl label --local -f - podcap.test/checked=yes -o name 2>"$tmp/kubectl.err" | wc -l)
  [ "$n" = 13 ] && ok "kubectl reads the k8s-json List: $n objects" || bad "kubectl read $n objects: $(cat "$tmp/kubectl.err")"
fi

# ---- traffic and status -------------------------------------------------------------
out=$("$lab" traffic 2) && echo "$out" | grep -Eq 'traffic: [1-9][0-9]* rounds' && ok "$out" || bad "traffic: $out"
"$lab" status >"$tmp/status.out" 2>&1
grep -q '^  default/web NodePort 10.96.0.80 80/TCP nodePort 30080 -> web-1 10.244.1.10, web-2 10.244.2.12$' "$tmp/status.out" &&
  grep -Eq '^  web-2 +default +pc-node2 +10.244.2.12 +veth[0-9a-f]{8} \(ifindex [0-9]+\)' "$tmp/status.out" &&
  ok "status lists pods with their veths and the services" || { cat "$tmp/status.out"; bad "status output"; }

# ---- down ---------------------------------------------------------------------------
out=$("$lab" down 2>&1)
echo "$out" | grep -q 'CNI DEL for 7 pods, host-local held 0 addresses after DEL' && ok "$out" || bad "down: $out"
nothing_left "down"
"$lab" down >/dev/null 2>&1 && ok "second down" || bad "second down failed"
"$lab" status >/dev/null 2>&1; [ $? = 3 ] && ok "status after down: exit 3" || bad "status after down"

[ $fail = 0 ] && echo "lab-services: all passed" || echo "lab-services: FAILED"
exit $fail
