#!/bin/sh
# Every generated capture re-cut at several snaplens with `editcap -s`: podcap decode
# must not crash, and a packet whose reason changed because of the cut must now
# carry a truncation reason ("truncated-*"), never another kind of error.
# usage: truncation.sh PODCAP SRCDIR WORKDIR
set -u
podcap=$1 src=$2 work=$3/truncation-work
if ! /usr/bin/python3 -c 'import scapy' 2>/dev/null; then
	echo "SKIP: /usr/bin/python3 has no scapy (apt-get install python3-scapy)"
	exit 77
fi
if ! command -v editcap >/dev/null; then
	echo "SKIP: editcap not found (apt-get install wireshark-common)"
	exit 77
fi
rm -rf "$work" && mkdir -p "$work"
/usr/bin/python3 "$src/gen-captures.py" "$work/captures" 2>"$work/gen.err" || { cat "$work/gen.err"; exit 1; }
fail=0 runs=0
# reason of each packet: "malformed X" -> X, otherwise the last word of
# "not-ip"/"unsupported" lines, otherwise "ok"
reasons() {
	awk '/^summary:/ { next }
	     { r = "ok"; for (i = 1; i <= NF; i++) if ($i == "malformed") r = $(i + 1);
	       if ($NF == "not-ip" || $NF == "unsupported") r = $NF; print $1, r }' "$1"
}
for pcap in "$work"/captures/*.pcap; do
	name=$(basename "$pcap" .pcap)
	"$podcap" decode "$pcap" > "$work/$name.full" 2>&1
	reasons "$work/$name.full" > "$work/$name.full.r"
	for snap in 14 18 34 42 54 60 96; do
		cut="$work/$name.s$snap.pcap"
		editcap -s "$snap" "$pcap" "$cut" >/dev/null 2>&1 || { echo "FAIL: editcap -s $snap $name"; fail=$((fail + 1)); continue; }
		"$podcap" decode "$cut" > "$work/$name.s$snap.txt" 2>&1
		rc=$?
		runs=$((runs + 1))
		if [ "$rc" -ne 0 ]; then
			echo "FAIL: podcap decode $name at snaplen $snap exited $rc"
			tail -5 "$work/$name.s$snap.txt"
			fail=$((fail + 1))
			continue
		fi
		reasons "$work/$name.s$snap.txt" > "$work/$name.s$snap.r"
		# packet number, reason uncut, reason cut; a packet missing from the cut
		# output (a crash mid-file) counts as bad too
		bad=$(awk 'NR == FNR { full[$1] = $2; next }
		           { seen[$1] = 1; if ($2 != full[$1] && $2 !~ /^truncated-/) print $1, full[$1], $2 }
		           END { for (k in full) if (!(k in seen)) print k, full[k], "missing" }' \
		      "$work/$name.full.r" "$work/$name.s$snap.r")
		if [ -n "$bad" ]; then
			echo "FAIL: $name at snaplen $snap: packet / full reason / cut reason:"
			echo "$bad"
			fail=$((fail + 1))
		fi
	done
done
echo "decode truncation: $((runs - fail)) passed, $fail failed"
[ "$fail" = 0 ]
