#!/usr/bin/env bash
# Issue 17 (hardening): each finding of the audit, reproduced.  Every check here
# failed on the behaviour the audit found and passes now:
#   1  two writers on one database / one packet store: the second exits 1 naming
#      the first's pid (before: both exit 0 and records are lost)
#   2  read --db-cap and --store-cap hold with ten times the traffic (before: read
#      had no --db-cap; the store cap left index.db out)
#   3  store damage is reported: a garbage index.db or a bit-flipped segment makes
#      read / export / store check say so and exit 1 (before: exit 0, silent)
#   4  export -w never writes through a symbolic link, and a failed export leaves
#      the existing file as it was (before: target overwritten, file replaced by a
#      44-byte header)
#   5  stored data is not trusted: a 4 GB wire length is clamped and counted, CSV
#      carries no control characters, files are 0640 / directories 0750 (--group),
#      numbers with a space or a sign and path options that start with '-' are
#      refused (exit 2, no file made)
#   hardening.sh PODCAP
set -u
podcap=$(readlink -f "${1:?usage: hardening.sh PODCAP}")
here=$(cd "$(dirname "$0")" && pwd)
gen=$here/hardening-gen.py
tmp=$(mktemp -d)
holder=""
cleanup() { [ -n "$holder" ] && kill "$holder" 2>/dev/null; exec 3>&- 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
fail=0
ok()  { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

# expect STATUS PATTERN -- command...: exit status, stderr matching PATTERN, no signal.
expect() {
  local want=$1 pat=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err"; local got=$?
  if [ $got -ge 128 ]; then bad "$* died with signal $((got - 128))"; cat "$tmp/err"; return 1; fi
  if [ "$got" != "$want" ]; then bad "$*: exit $got, want $want"; head -5 "$tmp/err"; return 1; fi
  if [ -n "$pat" ] && ! grep -Eq -- "$pat" "$tmp/err"; then bad "$*: stderr does not match /$pat/:"; head -5 "$tmp/err"; return 1; fi
  ok "$* -> exit $got${pat:+: $(grep -Em1 -- "$pat" "$tmp/err" | cut -c1-150)}"
}
mode() { stat -c %a "$1"; }

/usr/bin/python3 "$gen" wire "$tmp/wire.pcap" &&
/usr/bin/python3 "$gen" ctl "$tmp/ctl.pcap" &&
/usr/bin/python3 "$gen" flows "$tmp/small.pcap" 200 &&
/usr/bin/python3 "$gen" flows "$tmp/flows.pcap" 60000 || { echo "cannot write the test captures"; exit 1; }

# ---- 1. one writer per database and per packet store ------------------------
# The first writer reads a pipe that stays open (only the pcap header is sent),
# so it holds its locks until we close the pipe.
mkfifo "$tmp/fifo"
"$podcap" read - --db "$tmp/one.db" --store "$tmp/one-store" --quiet < "$tmp/fifo" >"$tmp/holder.out" 2>&1 &
holder=$!
exec 3>"$tmp/fifo"
head -c 24 "$tmp/small.pcap" >&3
locked=0
for _ in $(seq 100); do
  if [ -e "$tmp/one.db-lock" ] && [ -d "$tmp/one-store" ]; then
    i1=$(stat -c %i "$tmp/one.db-lock"); i2=$(stat -c %i "$tmp/one-store")
    if grep -q "FLOCK.*:$i1 " /proc/locks && grep -q "FLOCK.*:$i2 " /proc/locks; then locked=1; break; fi
  fi
  sleep 0.1
done
if [ $locked = 1 ]; then
  expect 1 "being written by process $holder" -- "$podcap" read "$tmp/small.pcap" --db "$tmp/one.db" --quiet
  expect 1 "packet store .*being written by process $holder" -- \
    "$podcap" read "$tmp/small.pcap" --db "$tmp/other.db" --store "$tmp/one-store" --quiet
  # readers are not writers: they keep working beside it
  expect 0 '' -- "$podcap" flows --db "$tmp/one.db"
else
  bad "the first writer never took its locks"
fi
exec 3>&-
wait "$holder"; rc=$?; holder=""
[ $rc = 0 ] && ok "the first writer ends normally (exit 0)" || { bad "first writer exit $rc"; cat "$tmp/holder.out"; }
# once it is gone, the lock is free again (a killed writer leaves no stale lock)
expect 0 '' -- "$podcap" read "$tmp/small.pcap" --db "$tmp/one.db" --store "$tmp/one-store" --quiet

# ---- 2. caps that hold ------------------------------------------------------
# 60,000 flows of one 200-byte packet: about 18 MB of database and 15 MB of
# segments uncapped, ten times and more the 1 MiB caps.
expect 0 '' -- "$podcap" read "$tmp/flows.pcap" --db "$tmp/cap.db" --db-cap 1M --store "$tmp/cap-store" \
  --store-cap 1M --quiet
dbk=$(du -skc "$tmp"/cap.db "$tmp"/cap.db-wal "$tmp"/cap.db-shm 2>/dev/null | tail -1 | cut -f1)
stk=$(du -sk "$tmp/cap-store" | cut -f1)
[ "$dbk" -le 1024 ] && ok "--db-cap 1M: database $dbk KiB (du)" || bad "--db-cap 1M: database $dbk KiB (du)"
[ "$stk" -le 1024 ] && ok "--store-cap 1M: store $stk KiB (du, index included)" || bad "--store-cap 1M: store $stk KiB"
n=$(sqlite3 "$tmp/cap.db" 'SELECT count(*) FROM flows')
[ "$n" -gt 0 ] && [ "$n" -lt 60000 ] && ok "retention kept the newest $n flows" || bad "flows kept: $n"

# ---- 3. store damage is reported ----------------------------------------------
expect 0 '' -- "$podcap" read "$tmp/small.pcap" --db "$tmp/dmg.db" --store "$tmp/dmg-store" --quiet
seg=$(ls "$tmp"/dmg-store/segment-*.pcapng | head -1)
expect 0 'sound' -- sh -c "\"$podcap\" store check \"$tmp/dmg-store\" >&2"
# a flipped byte in the middle of a closed segment: caught by its chunk checksum
size=$(stat -c %s "$seg")
printf '\xff' | dd of="$seg" bs=1 seek=$((size / 2)) conv=notrunc status=none
expect 1 'damaged' -- sh -c "\"$podcap\" store check \"$tmp/dmg-store\" >&2"
expect 1 'damaged' -- "$podcap" export --db "$tmp/dmg.db" --filter 'id > 0' -w "$tmp/dmg.pcapng"
# a garbage index: moved aside, a new one started, and the run says so (exit 1)
rm -f "$tmp"/dmg-store/index.db-wal "$tmp"/dmg-store/index.db-shm
head -c 8192 /dev/urandom > "$tmp/dmg-store/index.db"
expect 1 'damaged' -- "$podcap" read "$tmp/small.pcap" --db "$tmp/dmg2.db" --store "$tmp/dmg-store" --quiet
ls "$tmp"/dmg-store/index.db.damaged-* >/dev/null 2>&1 && ok "the damaged index was kept aside" ||
  bad "no index.db.damaged-* kept"
expect 1 'damaged' -- sh -c "\"$podcap\" store check \"$tmp/dmg-store\" >&2"

# ---- 4. export -w: no symbolic links followed, no file lost -------------------
expect 0 '' -- "$podcap" read "$tmp/small.pcap" --db "$tmp/ex.db" --store "$tmp/ex-store" --quiet
echo "precious" > "$tmp/target"
ln -s "$tmp/target" "$tmp/link.pcapng"
expect 1 'symbolic link' -- "$podcap" export --db "$tmp/ex.db" --flow 1 -w "$tmp/link.pcapng"
[ "$(cat "$tmp/target")" = precious ] && [ -L "$tmp/link.pcapng" ] && ok "the link's target is untouched" ||
  bad "export wrote through a symbolic link"
echo "an older export" > "$tmp/old.pcapng"
expect 1 '' -- "$podcap" export --db "$tmp/ex.db" --flow 999999 -w "$tmp/old.pcapng"
[ "$(cat "$tmp/old.pcapng")" = "an older export" ] && ok "a failed export leaves the existing file as it was" ||
  bad "a failed export replaced the existing file ($(stat -c %s "$tmp/old.pcapng") bytes)"
expect 0 '' -- "$podcap" export --db "$tmp/ex.db" --flow 1 -w "$tmp/old.pcapng"
[ "$(head -c 4 "$tmp/old.pcapng" | od -An -tx1 | tr -d ' ')" = 0a0d0d0a ] && ok "a good export replaces it" ||
  bad "the good export is not a pcapng file"
ls -a "$tmp" | grep -q '\.tmp-' && bad "temporary files left behind: $(ls -a "$tmp" | grep '\.tmp-')" ||
  ok "no temporary file left behind"
expect 0 '' -- sh -c "\"$podcap\" export --db \"$tmp/ex.db\" --flow 1 -w - | head -c 4 >/dev/null"
# a stream is not a file to replace: /dev/null and a named pipe are written in place
expect 0 '' -- "$podcap" export --db "$tmp/ex.db" --flow 1 -w /dev/null
mkfifo "$tmp/out.fifo"
head -c 4 "$tmp/out.fifo" > "$tmp/fifo.out" &
reader=$!
expect 0 '' -- "$podcap" export --db "$tmp/ex.db" --flow 1 -w "$tmp/out.fifo"
wait $reader
[ -p "$tmp/out.fifo" ] && [ "$(od -An -tx1 "$tmp/fifo.out" | tr -d ' ')" = 0a0d0d0a ] &&
  ok "a named pipe gets the capture and stays a pipe" || bad "export to a named pipe"
mkdir "$tmp/adir"
expect 1 'not a regular file' -- "$podcap" export --db "$tmp/ex.db" --flow 1 -w "$tmp/adir"

# ---- 5. stored data is not trusted -------------------------------------------
# a record claiming a 4 GB wire length
expect 0 '' -- "$podcap" read "$tmp/wire.pcap" --db "$tmp/wire.db"
grep -q '^wire lengths clamped 1 ' "$tmp/out" && ok "summary: $(grep '^wire lengths' "$tmp/out")" ||
  bad "no clamp counted: $(grep -i wire "$tmp/out")"
b=$(sqlite3 "$tmp/wire.db" 'SELECT sum(c2s_bytes + s2c_bytes) FROM flows')
[ "$b" -lt 1000000 ] && ok "the flow counts $b bytes, not 4 GB" || bad "the flow counts $b bytes"

# control characters from the wire: none in CSV (nor in the table)
expect 0 '' -- "$podcap" read "$tmp/ctl.pcap" --db "$tmp/ctl.db" --quiet
"$podcap" flows --db "$tmp/ctl.db" --csv > "$tmp/ctl.csv"
"$podcap" flows --db "$tmp/ctl.db" > "$tmp/ctl.txt"
grep -q 'example.com' "$tmp/ctl.csv" || bad "the CSV lacks the hostile host names"
if LC_ALL=C grep -q $'[\x01-\x09\x0b-\x1f\x7f]\|\xc2[\x80-\x9f]' "$tmp/ctl.csv" "$tmp/ctl.txt"; then
  bad "control characters in the output: $(LC_ALL=C grep -o $'[^,]*[\x01-\x09\x0b-\x1f\x7f][^,]*' "$tmp/ctl.csv" | cat -v | head -3)"
else
  ok "no control characters in CSV or table ($(grep -o 'web[^,]*example.com' "$tmp/ctl.csv" | head -1))"
fi
sqlite3 "$tmp/ctl.db" "SELECT count(*) FROM flows WHERE instr(host, char(27)) > 0" | grep -q '^[1-9]' &&
  ok "the database keeps the bytes as seen (only the output escapes them)" || bad "the host names lost their ESC"

# permissions: what holds payloads is readable by the group only
[ "$(mode "$tmp/ex.db")" = 640 ] && ok "database 0640" || bad "database mode $(mode "$tmp/ex.db")"
[ "$(mode "$tmp/ex-store")" = 750 ] && ok "store directory 0750" || bad "store mode $(mode "$tmp/ex-store")"
[ "$(mode "$tmp/ex-store/index.db")" = 640 ] && ok "store index 0640" || bad "index mode $(mode "$tmp/ex-store/index.db")"
s=$(ls "$tmp"/ex-store/segment-*.pcapng | head -1)
[ "$(mode "$s")" = 640 ] && ok "segment 0640" || bad "segment mode $(mode "$s")"
[ "$(mode "$tmp/old.pcapng")" = 640 ] && ok "export 0640" || bad "export mode $(mode "$tmp/old.pcapng")"
if [ "$(id -u)" = 0 ] && getent group daemon >/dev/null; then
  expect 0 '' -- "$podcap" read "$tmp/small.pcap" --db "$tmp/grp.db" --store "$tmp/grp-store" --group daemon --quiet
  g=$(stat -c %G "$tmp/grp.db" "$tmp/grp-store" "$tmp/grp-store/index.db" | sort -u | tr '\n' ' ')
  [ "$g" = "daemon " ] && ok "--group daemon: database, store and index owned by group daemon" ||
    bad "--group daemon: groups $g"
  expect 0 '' -- env PODCAP_GROUP=daemon "$podcap" export --db "$tmp/grp.db" --flow 1 -w "$tmp/grp.pcapng"
  [ "$(stat -c %G:%a "$tmp/grp.pcapng")" = daemon:640 ] && ok "PODCAP_GROUP=daemon export: daemon, 0640" ||
    bad "export with PODCAP_GROUP: $(stat -c %G:%a "$tmp/grp.pcapng")"
else
  echo "skip - --group needs root and a group 'daemon'"
fi
expect 2 'group' -- "$podcap" read "$tmp/small.pcap" --db "$tmp/x.db" --group no-such-group-here

# numbers: digits only; paths: not a value left out
cd "$tmp" || exit 1
for v in ' 100' '+100' '-1' '100 ' '0x10' '1e3' ''; do
  expect 2 'bad --max-flows' -- "$podcap" read small.pcap --db num.db --max-flows "$v"
done
expect 2 'bad --db-cap' -- "$podcap" read small.pcap --db num.db --db-cap ' 5M'
expect 2 'bad --store-cap' -- "$podcap" read small.pcap --db num.db --store s --store-cap '-5M'
expect 2 'port' -- "$podcap" flows --db ex.db --port ' 80'
expect 2 'flow id' -- "$podcap" export --db ex.db --flow ' 1' -w x.pcapng
expect 2 'limit' -- "$podcap" export --db ex.db --app DNS --limit +5 -w x.pcapng
expect 2 'http-workers' -- "$podcap" serve --db ex.db --http-workers ' 2'
[ -e num.db ] && bad "a refused command created num.db" || ok "no database made by a refused command"
expect 2 "--db '-'" -- "$podcap" read small.pcap --db -
expect 2 "--db '--quiet'" -- "$podcap" read small.pcap --db --quiet
expect 2 "--store '--db'" -- "$podcap" read small.pcap --store --db p.db
expect 2 "-w '--db'" -- "$podcap" export -w --db ex.db --flow 1
expect 2 "--db '-'" -- "$podcap" export --db - --flow 1 -w x.pcapng
expect 2 "--db '--json'" -- "$podcap" flows --db --json
expect 2 "--db '-'" -- "$podcap" serve --db -
expect 2 "'-x'" -- "$podcap" store check -x
for f in - --db --quiet --json p.db x.pcapng; do
  [ -e "./$f" ] && bad "a file named '$f' was created"
done
ok "no file named '-', '--db', '--quiet' or '--json' created"

[ $fail = 0 ] && echo "hardening: all checks passed" || echo "hardening: FAILED"
exit $fail
