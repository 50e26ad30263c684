#!/bin/sh
# Golden test: `podcap decode` of each generated capture must equal the committed
# tests/decode/golden/<name>.txt.  UPDATE_GOLDEN=1 rewrites the golden files instead
# (then review the diff before committing).
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
for pcap in "$work"/captures/*.pcap; do
	name=$(basename "$pcap" .pcap)
	"$podcap" decode "$pcap" > "$work/$name.txt" 2>&1
	if [ "${UPDATE_GOLDEN:-0}" = 1 ]; then
		cp "$work/$name.txt" "$src/golden/$name.txt"
		echo "updated golden/$name.txt"
		continue
	fi
	if [ ! -f "$src/golden/$name.txt" ]; then
		echo "FAIL: $name: no golden/$name.txt"
		fail=$((fail + 1))
	elif diff -u "$src/golden/$name.txt" "$work/$name.txt"; then
		pass=$((pass + 1))
	else
		echo "FAIL: $name differs from golden/$name.txt (above: - golden, + now)"
		fail=$((fail + 1))
	fi
done
echo "decode golden: $pass passed, $fail failed"
[ "$fail" = 0 ]
