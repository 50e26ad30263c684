#!/bin/sh
# Reads the writer's sample files back with Wireshark's own readers (tshark,
# capinfos) and compares what they see with what was written.
# usage: tshark_check.sh TEST_PCAPNG_BINARY
set -u
bin=$1
for t in tshark capinfos; do
  command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not installed (apt-get install tshark)"; exit 77; }
done
dir=$(mktemp -d /tmp/pn-tshark-XXXXXX)
trap 'rm -rf "$dir"' EXIT
"$bin" "$dir" || { echo "FAIL: writer test failed"; exit 1; }
fail=0

# tshark warns on stderr when run as root; any other stderr line is a reader complaint.
ts() {
  tshark "$@" 2>"$dir/err"
  if grep -v 'Running as user' "$dir/err" | grep -q .; then
    echo "FAIL: tshark $*: $(cat "$dir/err")" >&2; touch "$dir/tsfail"
  fi
}
fields() { ts -r "$1" -T fields -e frame.len -e frame.cap_len -e frame.comment \
  -e frame.interface_name -e frame.interface_description -E separator=, | head -4; }
expected='60,60,1:LQU9qZlK+B5F3KDmev6m5PMibrg=,veth1234,default/frontend-7d9
1514,128,,cni0,
1514,1514,flow 42,veth1234,default/frontend-7d9
200,100,,cni0,'
for f in us.pcapng ns.pcapng; do
  got=$(fields "$dir/$f")
  if [ "$got" != "$expected" ]; then
    echo "FAIL: $f: tshark fields differ"; echo "expected:"; echo "$expected"; echo "got:"; echo "$got"; fail=1
  fi
  n=$(capinfos -c -M "$dir/$f" 2>&1 | awk -F': *' '/Number of packets/ {print $2}')
  [ "$n" = 23 ] || { echo "FAIL: $f: capinfos counts '$n' packets, expected 23"; capinfos "$dir/$f"; fail=1; }
  capinfos "$dir/$f" >/dev/null 2>&1 || { echo "FAIL: capinfos reports an error on $f"; fail=1; }
done
# Direction (epb_flags): inbound, none, outbound on the first three packets.
for f in us.pcapng ns.pcapng; do
  got=$(ts -r "$dir/$f" -c 3 -T fields -e frame.packet_flags_direction | tr '\n' ' ')
  [ "$got" = "0x00000001  0x00000002 " ] || { echo "FAIL: $f: directions '$got'"; fail=1; }
done
# Timestamps: µs file rounds down the ns value, ns file keeps it.
t_us=$(ts -r "$dir/us.pcapng" -c 1 -T fields -e frame.time_epoch)
t_ns=$(ts -r "$dir/ns.pcapng" -c 1 -T fields -e frame.time_epoch)
case "$t_us" in 1700000000.123456000*) ;; *) echo "FAIL: µs timestamp $t_us"; fail=1;; esac
case "$t_ns" in 1700000000.123456789*) ;; *) echo "FAIL: ns timestamp $t_ns"; fail=1;; esac
# userappl in the SHB
capinfos "$dir/us.pcapng" 2>&1 | grep -qi 'Capture application: *podcap' || { echo "FAIL: shb_userappl not seen"; fail=1; }
# interface statistics block
capinfos "$dir/us.pcapng" 2>&1 | grep -q 'Number of stat entries = 1' || { echo "FAIL: ISB not seen"; capinfos "$dir/us.pcapng"; fail=1; }
# classic pcap
got=$(ts -r "$dir/us.pcap" -T fields -e frame.len -e frame.cap_len)
[ "$got" = "$(printf '60\t60')" ] || { echo "FAIL: pcap: got '$got'"; fail=1; }
capinfos -t "$dir/us.pcap" 2>&1 | grep -q 'Wireshark/tcpdump/... - pcap' || { echo "FAIL: not a pcap file"; fail=1; }
n=$(capinfos -c -M "$dir/empty.pcap" 2>&1 | awk -F': *' '/Number of packets/ {print $2}')
[ "$n" = 0 ] || { echo "FAIL: empty.pcap: '$n'"; fail=1; }
# the file cut by a write error holds whole blocks only
capinfos "$dir/cut.pcapng" >/dev/null 2>&1 || { echo "FAIL: cut.pcapng unreadable"; capinfos "$dir/cut.pcapng"; fail=1; }
[ -e "$dir/tsfail" ] && fail=1   # set inside $(...) subshells
[ $fail = 0 ] && echo "tshark/capinfos read back every file as written"
exit $fail
