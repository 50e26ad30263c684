#!/usr/bin/env bash
# The streams test_stream wrote, read by tshark: the interface names and pods,
# the drop comment, the ISB counts, the inner frame as the pods' UDP packet.
#   tshark-check.sh TEST_STREAM
set -u
command -v tshark >/dev/null || { echo "SKIP: tshark missing (wireshark-common)"; exit 77; }
tmp=$(mktemp -d /tmp/pc-stream.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
"$1" "$tmp" >/dev/null || { echo "FAIL: test_stream"; exit 1; }
fail=0
check() { # what expected actual
  if [ "$2" = "$3" ]; then echo "ok - $1"; else echo "FAIL - $1: expected '$2', got '$3'"; fail=1; fi
}
ts() { tshark -r "$@" 2>/dev/null; }
check "basic: packets" 2 "$(ts "$tmp/basic.pcapng" | wc -l)"
check "basic: interface and pod" "vethaaaa default/web-1" \
  "$(ts "$tmp/basic.pcapng" -T fields -e frame.interface_name -e frame.interface_description | sort -u | tr '\t' ' ')"
check "basic: directions" "1,2" "$(ts "$tmp/basic.pcapng" -T fields -e frame.packet_flags_direction | paste -sd, | sed 's/0x0*//g')"
n=$(ts "$tmp/slow.pcapng" | wc -l)
c=$(ts "$tmp/slow.pcapng" -Y 'frame.comment contains "not delivered"' | wc -l)
check "slow: one packet carries the drop comment" 1 "$c"
[ "$n" -gt 10 ] && echo "ok - slow: $n packets readable" || { echo "FAIL - slow: $n packets"; fail=1; }
check "inner: the pods' UDP packet, no VXLAN" "10.0.0.1 10.0.0.2 80 eth:ethertype:ip:udp" \
  "$(ts "$tmp/inner.pcapng" -T fields -e ip.src -e ip.dst -e udp.dstport -e frame.protocols | tr '\t' ' ' | sed 's/:data$//')"
exit $fail
