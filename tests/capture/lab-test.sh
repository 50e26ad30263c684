#!/usr/bin/env bash
# lab/lab up and down are idempotent, and discovery names what the lab made:
# pod veths (made by the CNI plugins: bridge on node1, ptp on node2, both name them
# veth + 8 hex) with their pod names from the inventory, the cni0 bridge, both VXLAN
# devices and the node NIC.
# usage: lab-test.sh SRCDIR CAP_PROBE
SRC=$1 PROBE=$2
. "$SRC/tests/capture/lib.sh"
require_root lab-test
LAB=$SRC/lab/lab
# The whole test holds the lab lock (re-entrant when the caller already holds it).
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$LAB" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
INV=$(mktemp /tmp/pc-lab-inv.XXXXXX.json)
export PODCAP_LAB_INVENTORY=$INV
trap '"$LAB" down >/dev/null 2>&1 || true; rm -f "$INV"' EXIT

"$LAB" down >/dev/null
"$LAB" up || fail "lab up"
"$LAB" up | grep -q "already up" || fail "second lab up was not a no-op"
"$LAB" status >/dev/null || fail "lab status after up"
pass "lab up twice"

D1=$(ip netns exec pc-node1 "$PROBE" discover "$INV" pc-node1)
D2=$(ip netns exec pc-node2 "$PROBE" discover "$INV" pc-node2)
echo "$D1" | sed 's/^/  node1: /'
echo "$D2" | sed 's/^/  node2: /'
expect() { # text regex what
  echo "$1" | grep -Eq "$2" || fail "$3"
}
expect "$D1" '^veth[0-9a-f]{8} pod-veth veth default/web-1$' "node1: web-1's veth not found as a pod veth"
expect "$D1" '^veth[0-9a-f]{8} pod-veth veth kube-system/coredns$' "node1: coredns veth"
expect "$D1" '^veth[0-9a-f]{8} pod-veth veth default/client-1$' "node1: client-1 veth"
expect "$D1" '^cni0 bridge bridge -$' "node1: cni0 bridge"
expect "$D1" '^flannel\.1 overlay vxlan -$' "node1: flannel.1 overlay"
expect "$D1" '^vxlan0 overlay vxlan -$' "node1: vxlan0 overlay"
expect "$D1" '^eth0 nic veth -$' "node1: eth0 as the node NIC"
expect "$D1" '^lo loopback' "node1: lo"
expect "$D2" '^veth[0-9a-f]{8} pod-veth veth default/tls-1$' "node2: tls-1 ptp veth"
expect "$D2" '^veth[0-9a-f]{8} pod-veth veth default/api-1$' "node2: api-1 ptp veth"
expect "$D2" '^veth[0-9a-f]{8} pod-veth veth default/web-2$' "node2: web-2 ptp veth"
expect "$D2" '^flannel\.1 overlay vxlan -$' "node2: flannel.1"
expect "$D2" '^vxlan0 overlay vxlan -$' "node2: vxlan0 overlay"
# Exactly the inventory's pods of each node are pod veths (3 on node1, 4 on node2).
for n in 1 2; do
  want=$(/usr/bin/python3 -c 'import json, sys
print(sum(p["node"] == sys.argv[2] for p in json.load(open(sys.argv[1]))["pods"]))' "$INV" pc-node$n)
  D=$D1; [ $n = 2 ] && D=$D2
  [ "$want" -ge 3 ] || fail "inventory lists $want pods on node$n"
  [ "$(echo "$D" | grep -c ' pod-veth ')" = "$want" ] || fail "node$n: expected exactly $want pod veths"
done
# The veth names in the inventory are the ones discovery sees.
for v in $(grep -o '"host_veth": "[^"]*"' "$INV" | cut -d'"' -f4); do
  echo "$D1$D2" | grep -q "^$v pod-veth" || fail "inventory veth $v not discovered"
done
pass "discovery: pod veths named, bridge, overlays, NIC"

# Traffic crosses both tunnels.
"$LAB" traffic 2 >/dev/null
for dev in flannel.1 vxlan0; do
  n=$(ip netns exec pc-node1 cat /sys/class/net/$dev/statistics/tx_packets)
  [ "$n" -gt 0 ] || fail "no traffic on $dev"
done
pass "traffic over flannel.1 and vxlan0"

"$LAB" down || fail "lab down"
"$LAB" down || fail "second lab down"
for ns in pc-node1 pc-node2 pc-web-1 pc-tls-1; do
  ip netns list | grep -qw "$ns" && fail "$ns still exists after down"
done
[ -e "$INV" ] && fail "inventory left behind"
"$LAB" status >/dev/null && fail "status says up after down"
pass "lab down twice, nothing left"
