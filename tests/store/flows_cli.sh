#!/bin/sh
# Tests `podcap flows`: formats (JSON parsed with jq, CSV, table), filters,
# --since forms, and exit codes for bad usage (2) and bad databases (1).
# usage: flows_cli.sh PODCAP STORE_MKDB JQ
set -u
PODCAP=$1 MKDB=$2 JQ=${3:-}
if [ -z "$JQ" ] || [ ! -x "$JQ" ]; then
	echo "SKIP: jq not found (apt-get install jq)"
	exit 77
fi
if ! command -v sqlite3 >/dev/null; then
	echo "SKIP: sqlite3 command not found (apt-get install sqlite3)"
	exit 77
fi
T=$(mktemp -d "${TMPDIR:-/tmp}/podcap-flows-XXXXXX")
trap 'rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect CODE CMD...: runs CMD, checks its exit status.
expect() {
	want=$1; shift
	"$@" >"$T/out" 2>"$T/err"; got=$?
	[ "$got" = "$want" ] || fail "'$*' exited $got, want $want: $(head -c 300 "$T/err")"
}
integrity() {
	r=$(sqlite3 "$1" 'PRAGMA integrity_check' 2>&1)
	[ "$r" = ok ] || fail "integrity_check $1: $r"
}

DB=$T/flows.db
"$MKDB" "$DB" fixture || { echo "FAIL: cannot build fixture"; exit 1; }

# JSON: an array of all 4 flows, newest first, parsed by jq.
expect 0 "$PODCAP" flows --db "$DB" --json
[ "$($JQ length "$T/out")" = 4 ] || fail "json length"
[ "$($JQ -r '[.[].id] | join(",")' "$T/out")" = "1,2,3,4" ] || fail "json order: $($JQ -c '[.[].id]' "$T/out")"
[ "$($JQ -r '.[0].proto_name' "$T/out")" = "TLS.Facebook" ] || fail "json proto_name"
[ "$($JQ -r '.[0].pod' "$T/out")" = "default/frontend-7d9" ] || fail "json pod"
[ "$($JQ -r '.[2].outer_dst + " " + (.[2].vni|tostring) + " " + .[2].tunnel' "$T/out")" = "192.168.50.2 1 vxlan" ] \
	|| fail "json tunnel fields"
[ "$($JQ -r '.[1].rtt_us' "$T/out")" = null ] || fail "json rtt null"

# Filters.
expect 0 "$PODCAP" flows --db "$DB" --json --app tls
[ "$($JQ -r '[.[].id] | join(",")' "$T/out")" = "1,4" ] || fail "--app tls"
expect 0 "$PODCAP" flows --db "$DB" --json --app Facebook
[ "$($JQ length "$T/out")" = 1 ] || fail "--app Facebook"
expect 0 "$PODCAP" flows --db "$DB" --json --ip 192.168.50.1
[ "$($JQ -r '.[0].id' "$T/out")" = 3 ] || fail "--ip outer"
expect 0 "$PODCAP" flows --db "$DB" --json --port 53
[ "$($JQ -r '.[0].app_name' "$T/out")" = DNS ] || fail "--port 53"
expect 0 "$PODCAP" flows --db "$DB" --json --limit 2
[ "$($JQ length "$T/out")" = 2 ] || fail "--limit 2"
expect 0 "$PODCAP" flows --db "$DB" --json --since 2024-10-01T12:00:35
[ "$($JQ length "$T/out")" = 2 ] || fail "--since ISO"
expect 0 "$PODCAP" flows --db "$DB" --json --since 1727784035
[ "$($JQ length "$T/out")" = 2 ] || fail "--since epoch"
expect 0 "$PODCAP" flows --db "$DB" --json --since 1h
[ "$($JQ length "$T/out")" = 0 ] || fail "--since 1h (fixture is from 2024)"
expect 0 "$PODCAP" flows --db "$DB" --json --app nothing
[ "$($JQ length "$T/out")" = 0 ] || fail "empty result is []"

# CSV: header + 4 rows, quoted field survives.
expect 0 "$PODCAP" flows --db "$DB" --csv
[ "$(wc -l < "$T/out")" = 5 ] || fail "csv lines"
head -1 "$T/out" | grep -q '^id,obs_id,pod,' || fail "csv header"
grep -q '"backend, ""quoted"""' "$T/out" || fail "csv quoting"

# Table.
expect 0 "$PODCAP" flows --db "$DB"
grep -q 'TIME (UTC)' "$T/out" || fail "table header"
grep -q '10.244.1.5:40000 -> 157.240.1.35:443' "$T/out" || fail "table endpoint"
[ "$(wc -l < "$T/out")" = 5 ] || fail "table lines"

# Bad usage: exit 2 and a usage line.
for args in "--bogus" "--limit" "--limit x" "--limit -3" "--port 70000" "--port abc" \
	"--since yesterday" "--since 10x" "--since 2024-13-01T00:00:00" "--json --csv" \
	"--ip 300.1.1.1" "extra-arg"; do
	# shellcheck disable=SC2086
	expect 2 "$PODCAP" flows --db "$DB" $args
	grep -q '^usage: podcap flows' "$T/err" || fail "no usage line for '$args'"
done
expect 2 "$PODCAP" flows
grep -q '^usage: podcap flows' "$T/err" || fail "no usage line without --db"
expect 0 "$PODCAP" flows --help
grep -q -- '--since' "$T/out" || fail "--help text"

# Bad databases: exit 1 with a message naming the problem.
expect 1 "$PODCAP" flows --db "$T/missing.db"
grep -q 'missing.db' "$T/err" || fail "missing db message"
[ ! -e "$T/missing.db" ] || fail "flows created a missing db"
echo "not a database" > "$T/text.db"
expect 1 "$PODCAP" flows --db "$T/text.db"
grep -q 'not a database' "$T/err" || fail "text db message"
"$MKDB" "$T/big.db" synthetic 20000 2>/dev/null || fail "mkdb big"
sqlite3 "$T/big.db" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
# A page in last-packet order whose matches the planner would sort runs its plan
# within a budget; past it (dport == 443: 24,000 of 60,000 flows) the page is
# asked again walking the time index; sparse filters (one flow, 1,200) stay with
# the planner.  Either way the page is the newest matches, as SQL orders them.
"$MKDB" "$T/b60.db" synthetic 60000 2>/dev/null || fail "mkdb 60000"
for f in 'dst == 10.96.0.7|dst = '"'"'10.96.0.7'"'" 'dport == 443|dport = 443' \
	 'src == 10.244.3.7|src = '"'"'10.244.3.7'"'" 'dst == 10.96.0.7 and app == DNS|dst = '"'"'10.96.0.7'"'"' AND proto_name = '"'"'DNS'"'"; do
	filter=${f%%|*} sql=${f#*|}
	want=$(sqlite3 "$T/b60.db" "SELECT id FROM flows WHERE $sql ORDER BY last_us DESC, id DESC LIMIT 30" | paste -sd,)
	got=$("$PODCAP" flows --db "$T/b60.db" "$filter" --limit 30 --csv | tail -n +2 | cut -d, -f1 | paste -sd,)
	[ -n "$want" ] && [ "$got" = "$want" ] || fail "page of '$filter': got '$got', want '$want'"
done
# --order: each order's page is SQL's, on the 60k flows (-first walks the last_us
# index past the planner's budget); an unknown order is a usage error.
for o in '-bytes|(c2s_bytes + s2c_bytes) DESC, id DESC' '-packets|(c2s_pkts + s2c_pkts) DESC, id DESC' \
	 '-first|first_us DESC, id DESC' 'first|first_us, id' 'id|id' '-id|id DESC' 'last|last_us, id'; do
	order=${o%%|*} sql=${o#*|}
	want=$(sqlite3 "$T/b60.db" "SELECT id FROM flows WHERE dport = 443 ORDER BY $sql LIMIT 25" | paste -sd,)
	got=$("$PODCAP" flows --db "$T/b60.db" 'dport == 443' --order "$order" --limit 25 --csv | tail -n +2 | cut -d, -f1 | paste -sd,)
	[ -n "$want" ] && [ "$got" = "$want" ] || fail "--order $order: got '$got', want '$want'"
done
expect 2 "$PODCAP" flows --db "$T/b60.db" --order biggest
grep -q "not an order" "$T/err" && grep -q '^usage:' "$T/err" || fail "--order biggest: $(cat "$T/err")"
# Without the last_us index (a deferred build cut short; flows opens read-only and
# cannot add it) the dense page still comes, the planner's way.
cp "$T/b60.db" "$T/noidx.db"
sqlite3 "$T/noidx.db" 'DROP INDEX flows_last' || fail "drop flows_last"
want=$(sqlite3 "$T/noidx.db" "SELECT id FROM flows WHERE dport = 443 ORDER BY last_us DESC, id DESC LIMIT 30" | paste -sd,)
got=$("$PODCAP" flows --db "$T/noidx.db" 'dport == 443' --limit 30 --csv 2>"$T/err" | tail -n +2 | cut -d, -f1 | paste -sd,)
[ -n "$want" ] && [ "$got" = "$want" ] || fail "no last_us index: got '$got', want '$want': $(cat "$T/err")"
head -c 100000 "$T/big.db" > "$T/trunc.db"
expect 1 "$PODCAP" flows --db "$T/trunc.db"
grep -q 'truncated' "$T/err" || fail "truncated db message: $(cat "$T/err")"
cp "$T/big.db" "$T/newer.db"
sqlite3 "$T/newer.db" 'PRAGMA user_version = 99'
expect 1 "$PODCAP" flows --db "$T/newer.db"
grep -q 'newer' "$T/err" || fail "newer schema message"

# Garbage over b-tree pages (file header intact).
cp "$T/big.db" "$T/corrupt.db"
head -c 4096 /dev/zero | tr '\0' '\245' > "$T/junk"
for page in 2 5 8 11 14 17 20 23 26 29; do
	dd if="$T/junk" of="$T/corrupt.db" bs=4096 seek=$page conv=notrunc status=none
done
expect 1 "$PODCAP" flows --db "$T/corrupt.db" --json
grep -q -e 'malformed' -e 'corrupt' "$T/err" || fail "corrupt db message: $(cat "$T/err")"

integrity "$DB"
integrity "$T/big.db"
if [ "$fails" -gt 0 ]; then
	echo "$fails failure(s)"
	exit 1
fi
echo "ok flows cli"
