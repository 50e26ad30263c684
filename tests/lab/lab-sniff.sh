#!/usr/bin/env bash
# Issue 13 on the lab (root; skips otherwise): `podcap sniff <client pod>` through
# the agent's API while the client makes 1,000 HTTP requests across nodes
# (client-1 on node 1 -> web-2 on node 2, over flannel.1), read live by
# `tshark -r -` from a pipe.  The stream must hold every packet the pod's veth
# carried: the veth's own rx+tx counters over the same window are the truth.
# Run with both backends (--backend ebpf: the kernel program must send every
# packet of the streamed veth, not only flow heads; --backend pcap).  The eBPF
# agent runs with --flow-packets 2, and 50 requests before and after the stream
# must reach user space as flow heads only (the veth goes back to sampling).
#
# Frames that are not IP are streamed too: with `-f arp`, the client's ARP
# request for its gateway (twice on the veth: the bridge port's hairpin mode
# sends the broadcast back, tcpdump sees the same) and the bridge's reply.
#
# The lab's pods and node are given permanent neighbour entries for the
# counting window: an ARP refresh at its edges would be streamed and not
# counted, or counted and not streamed.  The test says so if it sees a difference.
#   lab-sniff.sh SRCDIR PODCAP
set -u
src=${1:?usage: lab-sniff.sh SRCDIR PODCAP}; podcap=${2:?}
if [ "$(id -u)" != 0 ]; then echo "SKIP: lab-sniff needs root (network namespaces, BPF)"; exit 77; fi
for t in curl tshark /usr/bin/python3; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
lab=$src/lab/lab
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
tmp=$(mktemp -d /tmp/pc-labsniff.XXXXXX)
export PODCAP_LAB_INVENTORY=$tmp/pods.json
agent="" sniff=""
cleanup() {
  [ -n "$sniff" ] && kill -INT "$sniff" 2>/dev/null && wait "$sniff" 2>/dev/null
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  "$lab" down >/dev/null 2>&1
  rm -rf "$tmp"
}
trap cleanup EXIT
[ -n "${KEEP:-}" ] && trap - EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }
REQUESTS=${REQUESTS:-1000}

"$lab" down >/dev/null 2>&1
"$lab" up >/dev/null || { echo "FAIL - lab up"; exit 1; }
veth=$(/usr/bin/python3 -c 'import json,sys
for p in json.load(open(sys.argv[1]))["pods"]:
    if p["name"] == "client-1": print(p["host_veth"])' "$PODCAP_LAB_INVENTORY")
[ -n "$veth" ] || { echo "FAIL - no client-1 in the inventory"; exit 1; }
pmac=$(ip netns exec pc-client-1 cat /sys/class/net/eth0/address)
gmac=$(ip -n pc-node1 -j link show cni0 | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["address"])')
# No IPv6 on node 1's bridge and the links of its pods for the test's duration:
# router solicitations and MLD reports come on their own (the bridge floods the
# other pods' and its own multicast out of the client's veth too), and one
# falling between the stream's start and the first counter reading would be
# streamed and not counted.
ip netns exec pc-node1 sysctl -qw net.ipv6.conf.$veth.disable_ipv6=1 net.ipv6.conf.cni0.disable_ipv6=1
for p in web-1 coredns client-1; do ip netns exec pc-$p sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1; done
# no ARP in the counting window (see above)
ip -n pc-client-1 neigh replace 10.244.1.1 lladdr "$gmac" dev eth0 nud permanent
ip -n pc-node1 neigh replace 10.244.1.12 lladdr "$pmac" dev cni0 nud permanent

counters() { # rx+tx packets of the client's veth, in node 1
  ip netns exec pc-node1 sh -c "echo \$((\$(cat /sys/class/net/$veth/statistics/rx_packets) + \$(cat /sys/class/net/$veth/statistics/tx_packets)))"
}

# What the agent received on the client's veth (eBPF: what the kernel program sent
# through the ring).
veth_received() {
  curl -s "$url/api/v1/stats" | /usr/bin/python3 -c 'import json,sys
print(sum(i["received"] for i in json.load(sys.stdin)["interfaces"] if i["iface"] == sys.argv[1]))' "$veth"
}
sampled() { # eBPF, --flow-packets 2: 50 requests without a stream reach user space as flow heads only
  local r0 r1
  sleep 1.1 # the API's interface counters are a snapshot made once a second
  r0=$(veth_received)
  ip netns exec pc-client-1 curl -s -o /dev/null "http://10.244.2.12:8080/?s=[1-50]"
  sleep 1.1
  r1=$(veth_received)
  echo $((r1 - r0))
}

for backend in ebpf pcap; do
  log=$tmp/agent-$backend.log
  # eBPF with only 2 packets of each flow to user space: the stream must still get
  # them all, and the veth must go back to flow heads when the stream ends.
  extra=""; [ $backend = ebpf ] && extra="--flow-packets 2"
  "$podcap" run --netns pc-node1 --backend $backend --db "$tmp/$backend.db" --inventory "$PODCAP_LAB_INVENTORY" \
    --listen 127.0.0.1:0 --stats-interval 0 $extra >"$log" 2>&1 &
  agent=$!
  for i in $(seq 1 150); do grep -q "capturing on $veth" "$log" && grep -q 'API and web page on' "$log" && break; sleep 0.1; done
  url=$(grep -o 'http://127.0.0.1:[0-9]*' "$log" | head -1)
  [ -n "$url" ] && grep -q "backend $backend" "$log" || { cat "$log"; bad "$backend: agent did not start"; kill $agent; wait $agent; agent=""; continue; }
  sleep 1.2 # the capture publishes its interfaces to the API once a second
  # the conntrack reader's counters (Services after DNAT) reach the stats
  ct=$(curl -s "$url/api/v1/stats" | /usr/bin/python3 -c 'import json,sys; c=json.load(sys.stdin).get("conntrack"); print(c is not None and all(k in c for k in ("overruns","evicted","errors")))')
  [ "$ct" = True ] && ok "$backend: conntrack counters in /api/v1/stats" || bad "$backend: no conntrack counters in the stats ($ct)"
  r0=$(veth_received)
  if [ $backend = ebpf ]; then
    before=$(sampled)
    [ "$before" -gt 0 ] && [ "$before" -le 300 ] && ok "ebpf: without a stream, 50 requests reach user space as flow heads ($before packets)" ||
      bad "ebpf: $before packets of 50 requests without a stream (flow heads, 1..300, expected)"
    r0=$(veth_received)
  fi
  # The pipe: sniff -> tee (to see when the header came) -> tshark -r -.
  ( "$podcap" sniff client-1 -n default --server "$url" 2>"$tmp/sniff-$backend.err" |
      tee "$tmp/s-$backend.pcapng" |
      tshark -r - -T fields -e frame.interface_name -e frame.interface_description -e ip.src -e ip.dst \
        -e tcp.flags.syn -e tcp.flags.ack -e frame.protocols 2>"$tmp/tshark-$backend.err" >"$tmp/s-$backend.txt" ) &
  sniff=$!
  for i in $(seq 1 100); do [ -s "$tmp/s-$backend.pcapng" ] && break; sleep 0.05; done
  [ -s "$tmp/s-$backend.pcapng" ] || { cat "$tmp/sniff-$backend.err"; bad "$backend: no stream header"; }
  c0=$(counters)
  codes=$(ip netns exec pc-client-1 curl -s -o /dev/null -w '%{http_code}\n' \
    "http://10.244.2.12:8080/?req=[1-$REQUESTS]" | sort | uniq -c | tr -s ' ' | paste -sd, )
  sleep 1 # the last packets through the engine and the stream (at most ~20 ms each)
  c1=$(counters)
  for p in $(pgrep -f "podcap sniff client-1 -n default --server $url"); do kill -INT "$p"; done
  wait "$sniff"; sniff=""
  veth_pkts=$((c1 - c0))
  sleep 1.1
  recv=$(( $(veth_received) - r0 ))
  if [ $backend = ebpf ]; then
    for i in $(seq 1 50); do [ "$(curl -s "$url/api/v1/stats" | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["streams"]["open"])')" = 0 ] && break; sleep 0.1; done
    # Three samples, the median judged (a stream that just ended is noticed at
    # its next keep-alive, within 2-4 s of silence; the wait above covers most).
    a1=$(sampled); a2=$(sampled); a3=$(sampled)
    after=$(printf '%s\n' $a1 $a2 $a3 | sort -n | sed -n 2p)
    [ "$recv" -ge "$veth_pkts" ] && ok "ebpf: with the stream, the kernel sent every packet of the veth ($recv >= $veth_pkts)" ||
      bad "ebpf: with the stream, $recv packets to user space, veth $veth_pkts"
    [ "$after" -gt 0 ] && [ "$after" -le 300 ] && ok "ebpf: after the stream, back to flow heads (median $after packets for 50 requests; samples $a1 $a2 $a3)" ||
      bad "ebpf: after the stream, median $after packets for 50 requests (samples $a1 $a2 $a3; flow heads, 1..300, expected)"
  fi
  n=$(wc -l <"$tmp/s-$backend.txt")
  [ "$codes" = " $REQUESTS 200" ] && ok "$backend: $REQUESTS HTTP requests from client-1 to web-2 across nodes" ||
    bad "$backend: requests: $codes"
  if [ "$n" = "$veth_pkts" ] && [ "$n" -gt $((REQUESTS * 5)) ]; then
    ok "$backend: the stream read by tshark -r - from a pipe holds all $n packets the veth carried"
  else
    bad "$backend: stream $n packets, veth counters $veth_pkts"
    cut -f7 "$tmp/s-$backend.txt" | sort | uniq -c | sort -rn | head -5
  fi
  syn=$(awk -F'\t' '($5 == "1" || $5 == "True") && ($6 == "0" || $6 == "False") && $3 == "10.244.1.12"' "$tmp/s-$backend.txt" | wc -l)
  [ "$syn" = "$REQUESTS" ] && ok "$backend: $syn connections opened (SYN)" || bad "$backend: $syn SYNs for $REQUESTS requests"
  names=$(cut -f1,2 "$tmp/s-$backend.txt" | sort -u | tr '\t' ' ' | paste -sd,)
  [ "$names" = "$veth default/client-1" ] && ok "$backend: the interface is named $veth, pod default/client-1" ||
    bad "$backend: interfaces '$names'"
  grep -q "podcap sniff: $n packets .* 0 not delivered" "$tmp/sniff-$backend.err" &&
    ok "$backend: sniff's count line: $(grep 'podcap sniff:' "$tmp/sniff-$backend.err" | tail -1)" ||
    bad "$backend: sniff said: $(cat "$tmp/sniff-$backend.err")"
  # ARP is streamed as well: the client forgets its gateway's address and sends
  # it a datagram; `-f arp` for 2 seconds gets the request and the bridge's reply.
  ( "$podcap" sniff client-1 -n default --server "$url" -f arp --seconds 2 -w - \
      2>"$tmp/arp-$backend.err" >"$tmp/arp-$backend.pcapng" ) &
  sniff=$!
  for i in $(seq 1 100); do [ -s "$tmp/arp-$backend.pcapng" ] && break; sleep 0.05; done
  ip -n pc-client-1 neigh del 10.244.1.1 dev eth0
  ip netns exec pc-client-1 /usr/bin/python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("10.244.1.1", 9))'
  wait "$sniff"; sniff=""
  ip -n pc-client-1 neigh replace 10.244.1.1 lladdr "$gmac" dev eth0 nud permanent
  arp=$(tshark -r "$tmp/arp-$backend.pcapng" -T fields -e arp.opcode -e arp.dst.proto_ipv4 2>/dev/null | sort | uniq -c | tr -s ' \t\n' ' ')
  case "$arp" in
    " "[12]" 1 10.244.1.1 1 2 10.244.1.12 ") ok "$backend: frames without IP are streamed: -f arp gave the ARP request and reply (count, opcode, target:$arp)" ;;
    *) false ;;
  esac ||
    bad "$backend: ARP stream: '$arp': $(cat "$tmp/arp-$backend.err")"
  kill -INT $agent; wait $agent; st=$?; agent=""
  [ $st = 0 ] || bad "$backend: agent exit $st"
  fin=$(grep 'podcap run: final' "$log")
  echo "   agent: $(echo "$fin" | tr ' ' '\n' | grep -E '^(received|ring_drops|kernel_drops|stream_packets|stream_dropped)=' | paste -sd' ')"
  case "$fin" in *stream_dropped=0*) ;; *) bad "$backend: the agent dropped stream packets: $fin";; esac
done
exit $fail
