#!/usr/bin/env bash
# Both live backends, on one end of a veth pair, see exactly the packets sent from
# the other end: ping -c N (echo requests) and N2 UDP frames in 5 flows injected
# with scapy.  libpcap hands up all of them; eBPF hands up the first 16 of each
# flow and its flow counters on the ingress hook equal the veth's own rx_packets.
# usage: backend-test.sh SRCDIR CAP_PROBE
SRC=$1 PROBE=$2
. "$SRC/tests/capture/lib.sh"
require_root backend-test
A=pc-tba-$$ B=pc-tbb-$$
trap cleanup_ns EXIT
make_ns "$A"
make_ns "$B"
ip link add vta netns "$A" type veth peer name vtb netns "$B"
for ns in "$A" "$B"; do
  ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
ip -n "$A" addr add 10.99.0.1/24 dev vta
ip -n "$B" addr add 10.99.0.2/24 dev vtb
ip -n "$A" link set vta up
ip -n "$B" link set vtb up
# Resolve ARP before counting so only the packets under test cross.
ip netns exec "$A" ping -c1 -W2 10.99.0.2 >/dev/null || fail "veth pair does not work"
MAC=$(ip netns exec "$B" cat /sys/class/net/vtb/address)

PINGS=7 INJECT=250
for backend in pcap ebpf; do
  OUT=$(mktemp)
  start_ready "$OUT" ip netns exec "$B" "$PROBE" count "$backend" vtb
  ip netns exec "$A" ping -q -c "$PINGS" -i 0.05 -W2 10.99.0.2 >/dev/null || fail "$backend: ping failed"
  ip netns exec "$A" /usr/bin/python3 - "$MAC" "$INJECT" <<'PY' || fail "scapy injection"
import logging
import sys
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)  # no "no route" warnings for L2 sends
from scapy.all import Ether, IP, IPv6, UDP, Raw, sendp, conf
conf.verb = 0
mac, n = sys.argv[1], int(sys.argv[2])
frames = [Ether(dst=mac) / IP(src="10.99.0.1", dst="10.99.0.2") / UDP(sport=10000 + (i % 5), dport=7777) / Raw(b"x" * 40)
          for i in range(n)]
frames6 = [Ether(dst=mac) / IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(sport=20000, dport=7778) / Raw(b"y" * 20)
           for i in range(10)]
sendp(frames + frames6, iface="vta")
PY
  sleep 0.3
  kill -TERM "$BG_PID"
  wait "$BG_PID" || { cat "$OUT"; fail "$backend: probe failed"; }
  line=$(grep '^backend=' "$OUT") || { cat "$OUT"; fail "$backend: no counters"; }
  rm -f "$OUT"
  echo "  $line"
  get() { echo "$line" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
  [ "$(get backend)" = "$backend" ] || fail "$backend: ran on $(get backend)"
  [ "$(get echo_req)" = "$PINGS" ] || fail "$backend: saw $(get echo_req) echo requests, sent $PINGS"
  if [ "$backend" = pcap ]; then
    [ "$(get udp7777)" = "$INJECT" ] || fail "pcap: saw $(get udp7777) injected frames, sent $INJECT"
  else
    # The ring carries the first 16 packets of each of the 5 UDP flows; the
    # kernel-side counters (checked below) account for all of them.
    [ "$(get udp7777)" = $((5 * 16)) ] || fail "ebpf: ring carried $(get udp7777) injected frames, expected 5 flows x 16"
  fi
  [ "$(get bad_records)" = 0 ] || fail "$backend: bad ring records"
  [ "$(get udp6)" = 10 ] || fail "$backend: saw $(get udp6) IPv6 frames, sent 10"
  if [ "$backend" = ebpf ]; then
    [ "$(get counted_in)" = "$(get rx_delta)" ] || fail "ebpf: counted $(get counted_in) on ingress, veth rx_packets grew by $(get rx_delta)"
    [ "$(get rx_delta)" -ge $((PINGS + INJECT + 10)) ] || fail "ebpf: rx_packets grew by only $(get rx_delta)"
    [ "$(get udp7777_counted)" = "$INJECT" ] || fail "ebpf: per-flow counters say $(get udp7777_counted) injected frames, sent $INJECT"
    [ "$(get udp6_counted)" = 10 ] || fail "ebpf: IPv6 flow counter says $(get udp6_counted), sent 10"
  fi
  # The tc programs and the clsact qdisc are gone once the probe exits.
  if ip netns exec "$B" tc qdisc show dev vtb | grep -q clsact; then fail "$backend: clsact left on vtb"; fi
  pass "$backend backend: exact counts"
done
