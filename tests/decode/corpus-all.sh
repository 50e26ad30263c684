#!/bin/sh
# Decodes every capture of the nDPI corpus: no crash (exit status above 1 or a
# signal; with the ASan build any sanitizer report aborts), and prints the
# malformed-reason totals so a change in what the decoder rejects shows up.
# Files libpcap cannot read (or that end mid-packet) exit 1 and are only counted.
# usage: corpus-all.sh PODCAP CORPUSDIR
set -u
podcap=$1 corpus=${PODCAP_CORPUS:-$2}
if [ ! -d "$corpus/pcap" ]; then
	echo "SKIP: nDPI corpus not found at $corpus (set PODCAP_CORPUS)"
	exit 77
fi
tmp=$(mktemp -d) || exit 1
trap 'rm -rf "$tmp"' EXIT
files=0 crashed=0 unreadable=0
for f in "$corpus"/pcap/*; do
	[ -f "$f" ] || continue
	files=$((files + 1))
	"$podcap" decode -q "$f" > "$tmp/out" 2> "$tmp/err"
	rc=$?
	if [ "$rc" -gt 1 ] || grep -q "AddressSanitizer\|runtime error" "$tmp/err"; then
		echo "CRASH: $f (exit $rc)"
		tail -20 "$tmp/err"
		crashed=$((crashed + 1))
	elif [ "$rc" -eq 1 ]; then
		unreadable=$((unreadable + 1))
		echo "note: $(basename "$f"): $(head -1 "$tmp/err")"
	fi
	grep '^summary:' "$tmp/out" >> "$tmp/all"
done
awk '$2 == "packets" { p += $3; m += $5 }
     $2 == "reason" { r[$3] += $4 }
     $2 == "tunnel" { t[$3] += $4 }
     END { printf "corpus: packets %d malformed %d\n", p, m;
           for (k in t) printf "corpus: tunnel %s %d\n", k, t[k];
           for (k in r) printf "corpus: reason %s %d\n", k, r[k] }' "$tmp/all" | sort
echo "corpus: files $files, ended early or unreadable $unreadable, crashed $crashed"
echo "decode corpus-all: $((files - crashed)) passed, $crashed failed"
[ "$crashed" = 0 ]
