#!/bin/sh
# End-to-end check of 'podcap export': corpus pcaps are replayed through decode →
# flow → flow store + packet segments (the engine with both sinks, eng-replay),
# then flows are exported and read back with tshark and compared, packet by packet
# (hex dumps), with the same flow's packets taken from the original capture.
# usage: export_check.sh SRCDIR PODCAP ENG_REPLAY
set -u
src=$1 podcap=$2 replay=$3
corpus=${PODCAP_CORPUS:-$src/../shared/corpus/ndpi}
[ -d "$corpus/pcap" ] || { echo "SKIP: nDPI corpus not found at $corpus (set PODCAP_CORPUS)"; exit 77; }
for t in tshark capinfos sqlite3; do
  command -v $t >/dev/null 2>&1 || { echo "SKIP: $t not installed"; exit 77; }
done
dir=$(mktemp -d /tmp/export-check-XXXXXX)
trap 'rm -rf "$dir"' EXIT
fail=0
bad() { echo "FAIL: $*"; fail=1; }
q() { sqlite3 -separator ' ' "$dir/flows.db" "$1"; }
ts() { tshark "$@" 2>/dev/null; }

# 1. byte-identical round trip, flow by flow
files="dns.pcap http-lines-split.pcap ftp.pcap"
set --
for f in $files; do set -- "$@" "$corpus/pcap/$f"; done
"$replay" --db "$dir/flows.db" --store "$dir/store" "$@" >/dev/null || { bad "eng-replay failed"; exit 1; }
n=0
for id in $(q "SELECT id FROM flows WHERE sport > 0 ORDER BY id"); do
  set -- $(q "SELECT c2s_pkts + s2c_pkts, src, dst, sport, dport, CASE ip_proto WHEN 6 THEN 'tcp' ELSE 'udp' END, community_id FROM flows WHERE id = $id")
  pkts=$1 a=$2 b=$3 pa=$4 pb=$5 l4=$6 cid=$7
  "$podcap" export --db "$dir/flows.db" --flow "$id" -w "$dir/f.pcapng" 2>"$dir/err" || { bad "flow $id: export failed: $(cat "$dir/err")"; continue; }
  got=$(capinfos -c -M "$dir/f.pcapng" 2>/dev/null | awk -F': *' '/Number of packets/ {print $2}')
  [ "$got" = "$pkts" ] || bad "flow $id: $got packets exported, flow record says $pkts"
  comments=$(ts -r "$dir/f.pcapng" -T fields -e frame.comment | sort -u)
  [ "$comments" = "$cid" ] || bad "flow $id: comments '$comments', expected '$cid'"
  filter="ip.addr==$a && ip.addr==$b && $l4.port==$pa && $l4.port==$pb"
  : > "$dir/orig.hex"
  for f in $files; do ts -r "$corpus/pcap/$f" -Y "$filter" -x >> "$dir/orig.hex"; done
  ts -r "$dir/f.pcapng" -x > "$dir/exp.hex"
  cmp -s "$dir/orig.hex" "$dir/exp.hex" || bad "flow $id ($filter): bytes differ from the original capture"
  ol=$(for f in $files; do ts -r "$corpus/pcap/$f" -Y "$filter" -T fields -e frame.time_epoch -e frame.len; done | md5sum)
  el=$(ts -r "$dir/f.pcapng" -T fields -e frame.time_epoch -e frame.len | md5sum)
  [ "$ol" = "$el" ] || bad "flow $id: timestamps or wire lengths differ"
  n=$((n + 1))
done
[ $n -ge 5 ] || bad "only $n flows compared"
echo "round trip: $n flows exported byte-identical to the original capture"

# the segment files themselves are plain pcapng that Wireshark reads
for f in "$dir"/store/segment-*.pcapng; do
  capinfos "$f" >/dev/null 2>&1 || bad "capinfos cannot read segment $f"
done

# 2. filters, stdout, pcap
"$podcap" export --db "$dir/flows.db" --filter 'port == 53' -w - 2>/dev/null > "$dir/dns.pcapng"
want=$(q "SELECT sum(c2s_pkts + s2c_pkts) FROM flows WHERE sport = 53 OR dport = 53")
got=$(capinfos -c -M "$dir/dns.pcapng" 2>/dev/null | awk -F': *' '/Number of packets/ {print $2}')
[ "$got" = "$want" ] || bad "--filter 'port == 53' to stdout: $got packets, want $want"
"$podcap" export --db "$dir/flows.db" --app FTP_CONTROL -F pcap -w "$dir/ftp.pcap" 2>/dev/null || bad "--app -F pcap failed"
capinfos -t "$dir/ftp.pcap" 2>/dev/null | grep -q 'pcap$' || bad "-F pcap did not write pcap"
ifn=$(ts -r "$dir/dns.pcapng" -T fields -e frame.interface_name | sort -u)
[ -n "$ifn" ] || bad "no interface name in the export"

# a reader that goes away: EPIPE reported, exit 1 (the ftp data flow is ~120 kB,
# more than a pipe holds, so the writer must hit the closed pipe)
big=$(q "SELECT id FROM flows ORDER BY c2s_bytes + s2c_bytes DESC LIMIT 1")
{ "$podcap" export --db "$dir/flows.db" --flow "$big" -w - 2>"$dir/err"; echo $? > "$dir/rc"; } | head -c 100 >/dev/null
[ "$(cat "$dir/rc")" = 1 ] && grep -q 'Broken pipe' "$dir/err" || bad "closed stdout: exit $(cat "$dir/rc"), $(cat "$dir/err")"

# 3. usage errors exit 2, unknown flows exit 1
"$podcap" export --db "$dir/flows.db" -w "$dir/x" >/dev/null 2>&1; [ $? = 2 ] || bad "missing --flow: exit not 2"
"$podcap" export --db "$dir/flows.db" --flow abc -w "$dir/x" >/dev/null 2>&1; [ $? = 2 ] || bad "bad id: exit not 2"
"$podcap" export --db "$dir/flows.db" --filter 'bytes >' -w "$dir/x" >/dev/null 2>&1; [ $? = 2 ] || bad "bad filter: exit not 2"
"$podcap" export --db "$dir/flows.db" --flow 1 -F pcapx -w "$dir/x" >/dev/null 2>&1; [ $? = 2 ] || bad "bad -F: exit not 2"
"$podcap" export --db "$dir/flows.db" --flow 999999 -w "$dir/x" >/dev/null 2>&1; [ $? = 1 ] || bad "unknown flow: exit not 1"

# 4. a deleted segment: the flows in it report missing packets, the rest exports
first=$(ls "$dir/store" | grep '^segment-' | head -1)
rm "$dir/store/$first"
"$podcap" export --db "$dir/flows.db" --filter 'port == 53' -w "$dir/part.pcapng" 2>"$dir/err"
rc=$?
grep -q 'missing' "$dir/err" || bad "deleted segment: no 'missing' message: $(cat "$dir/err")"
[ $rc = 0 ] || bad "deleted segment: exit $rc though other packets exist"
echo "deleted segment: $(grep -c . "$dir/err") message lines, e.g. $(head -1 "$dir/err")"

# 5. retention: a small cap expires early flows
set -- "$corpus/pcap/1kxun.pcap" "$corpus/pcap/alexa-app.pcapng" "$corpus/pcap/netflix.pcap"
"$replay" --db "$dir/cap.db" --store "$dir/capstore" --cap 1M --segment 128K "$@" >/dev/null || bad "replay with cap failed"
use=$(du -sb "$dir/capstore" | cut -f1)
[ "$use" -le 1048576 ] || bad "store uses $use bytes, cap is 1048576"
# flow ids grow in replay order; the files are not in time order
old=$(sqlite3 "$dir/cap.db" "SELECT min(id) FROM flows")
"$podcap" export --db "$dir/cap.db" --flow "$old" -w "$dir/old.pcapng" 2>"$dir/err"
rc=$?
grep -q "flow $old: packets expired" "$dir/err" || bad "expired flow: message missing: $(cat "$dir/err")"
[ $rc = 1 ] || bad "expired flow alone: exit $rc, want 1"
new=$(sqlite3 "$dir/cap.db" "SELECT max(id) FROM flows")
"$podcap" export --db "$dir/cap.db" --flow "$old" --flow "$new" -w "$dir/two.pcapng" 2>"$dir/err"
[ $? = 0 ] || bad "expired + stored flow: exit not 0: $(cat "$dir/err")"
echo "retention: store $use bytes under a 1 MiB cap; oldest flow: $(grep expired "$dir/err")"

[ $fail = 0 ] && echo "export: all checks passed"
exit $fail
