#!/bin/sh
# Golden test: `podcap decode` of each generated capture must equal the committed
# tests/decode/golden/<name>.txt, plus a few option variants and the command's exit
# codes.  UPDATE_GOLDEN=1 rewrites the golden files instead (review the diff).
# usage: golden.sh PODCAP SRCDIR WORKDIR
set -u
podcap=$1 src=$2 work=$3/golden-work
if ! /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
	echo "SKIP: /usr/bin/python3 has no scapy (apt-get install python3-scapy)"
	exit 77
fi
rm -rf "$work" && mkdir -p "$work"
if ! /usr/bin/python3 "$src/gen-captures.py" "$work/captures" 2>"$work/gen.err"; then
	cat "$work/gen.err"
	echo "FAIL: gen-captures.py"
	exit 1
fi
pass=0 fail=0
check() { # golden-name, then podcap decode arguments
	name=$1
	shift
	"$podcap" decode "$@" > "$work/$name.txt" 2>&1
	if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
		cp "$work/$name.txt" "$src/golden/$name.txt"
		echo "updated golden/$name.txt"
	elif [ ! -f "$src/golden/$name.txt" ]; then
		echo "FAIL: $name: no golden/$name.txt"
		fail=$((fail + 1))
	elif diff -u "$src/golden/$name.txt" "$work/$name.txt"; then
		pass=$((pass + 1))
	else
		echo "FAIL: $name differs from golden/$name.txt (above: - golden, + now)"
		fail=$((fail + 1))
	fi
}
for pcap in "$work"/captures/*.pcap; do
	check "$(basename "$pcap" .pcap)" "$pcap"
done
c=$work/captures
check tunnels-nodecap --no-decap "$c/tunnels.pcap"
check tunnels-depth1 --max-tunnel-depth 1 "$c/tunnels.pcap"
check tunnels-port4790 --vxlan-port 4790 -q "$c/tunnels.pcap"

exit_code() { # expected status, then arguments
	want=$1
	shift
	"$podcap" decode "$@" > "$work/exit.out" 2>&1
	got=$?
	if [ "$got" = "$want" ]; then
		pass=$((pass + 1))
	else
		echo "FAIL: podcap decode $* exited $got, expected $want:"
		cat "$work/exit.out"
		fail=$((fail + 1))
	fi
}
exit_code 2
exit_code 2 --vxlan-port 0 "$c/link.pcap"
exit_code 2 --vxlan-port 70000 "$c/link.pcap"
exit_code 2 --bogus "$c/link.pcap"
exit_code 2 "$c/link.pcap" "$c/raw.pcap"
exit_code 2 --vxlan-port 1 --vxlan-port 2 --vxlan-port 3 --vxlan-port 4 --vxlan-port 5 \
	--vxlan-port 6 --vxlan-port 7 "$c/link.pcap"
exit_code 1 "$work/no-such-file.pcap"
exit_code 1 "$src/gen-captures.py"
exit_code 0 --help
grep -q "usage: podcap decode" "$work/exit.out" || { echo "FAIL: --help prints no usage"; fail=$((fail + 1)); }
echo "decode golden: $pass passed, $fail failed"
[ "$fail" = 0 ]
