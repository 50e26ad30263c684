#!/bin/sh
# Tests `podcap top`: each key's rows and totals against SQL's GROUP BY on the
# same database (keys the rollup answers and keys it scans, names of the ends,
# with and without filters), the table, --server printing what --db prints, and
# exit codes for bad usage (2) and bad databases (1).
# usage: top_cli.sh PODCAP STORE_MKDB JQ
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
T=$(mktemp -d "${TMPDIR:-/tmp}/podcap-top-XXXXXX")
SERVE=
trap '[ -n "$SERVE" ] && kill "$SERVE" 2>/dev/null; rm -rf "$T"' EXIT
fails=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
expect() {
	want=$1; shift
	"$@" >"$T/out" 2>"$T/err"; got=$?
	[ "$got" = "$want" ] || fail "'$*' exited $got, want $want: $(head -c 300 "$T/err")"
}

DB=$T/flows.db
"$MKDB" "$DB" synthetic 20000 2>/dev/null || { echo "FAIL: cannot build the database"; exit 1; }
# names of the ends, as an agent with --kubernetes writes them
sqlite3 "$DB" "UPDATE flows SET src_pod = 'ns' || (id % 3) || '/client-' || (id % 11), src_ns = 'ns' || (id % 3),
  src_workload = 'Deployment/client-' || (id % 4) WHERE id % 5 != 0;
  UPDATE flows SET dst_pod = 'ns0/server-' || (id % 7), service = 'ns0/svc' || (id % 6) || ':80' WHERE id % 4 = 0" ||
	fail "names"

# check KEY SQLKEY METRIC SQLSUM FILTER SQLWHERE: the JSON rows (key|value), other
# and total against SQL's.
check() {
	key=$1 col=$2 metric=$3 sum=$4 filter=$5 where=$6
	expect 0 "$PODCAP" top --db "$DB" --by "$key" --metric "$metric" --limit 7 --json $filter
	"$JQ" -r '.rows[] | .key + "|" + (.value|tostring)' "$T/out" >"$T/got"
	sqlite3 "$DB" "SELECT coalesce($col, '') AS k, $sum AS v FROM flows WHERE $where GROUP BY k ORDER BY v DESC, k LIMIT 7" >"$T/want"
	total=$(sqlite3 "$DB" "SELECT coalesce($sum, 0) FROM flows WHERE $where")
	if cmp -s "$T/got" "$T/want" && [ "$("$JQ" -r '.total' "$T/out")" = "$total" ] &&
		[ "$("$JQ" -r '.total - ([.rows[].value] | add) - .other' "$T/out")" = 0 ] && [ -s "$T/got" ]; then
		ok "top --by $key --metric $metric ${filter:-(no filter)}: $(wc -l <"$T/got") rows and total $total as SQL's ($("$JQ" -r .source "$T/out"))"
	else
		fail "top --by $key --metric $metric $filter: $(tr '\n' ' ' <"$T/got") vs SQL $(tr '\n' ' ' <"$T/want"), total $("$JQ" -r .total "$T/out") vs $total"
	fi
}
check app proto_name bytes 'sum(c2s_bytes + s2c_bytes)' '' 1
check app proto_name flows 'count(*)' 'dport == 443' 'dport = 443'
check dport 'CAST(dport AS TEXT)' packets 'sum(c2s_pkts + s2c_pkts)' '' 1
check src src bytes 'sum(c2s_bytes + s2c_bytes)' 'proto == udp' 'ip_proto = 17'
check dst dst flows 'count(*)' '' 1
check src_pod src_pod flows 'count(*)' '' 1
check src_ns src_ns bytes 'sum(c2s_bytes + s2c_bytes)' 'dport == 443' 'dport = 443'
check src_workload src_workload packets 'sum(c2s_pkts + s2c_pkts)' '' 1
check service service flows 'count(*)' 'src_ns == ns1' "src_ns = 'ns1'"
check host host bytes 'sum(c2s_bytes + s2c_bytes)' '' 1

# a key that is not UTF-8 (a Host cut inside a character): U+FFFD in --json, no row lost
cp "$DB" "$T/utf.db"
sqlite3 "$T/utf.db" "UPDATE flows SET host = CAST(X'636166E92E6578616D706C65' AS TEXT) WHERE id % 2 = 0" || fail "utf8 db"
expect 0 "$PODCAP" top --db "$T/utf.db" --by host --limit 3 --json
[ "$("$JQ" -r '.rows | length' "$T/out")" = 3 ] && [ "$("$JQ" -r '.rows[0].key' "$T/out")" = "$(printf 'caf\357\277\275.example')" ] &&
	ok "--json: a key that is not UTF-8 as U+FFFD, every row kept" || fail "non-UTF-8 key: $(cat "$T/out")"

# --pod: the flows of one pod (either end or the observation point), and-ed with a
# filter parsed alone first, so that a ")" in it cannot undo the pod's test
npod=$(sqlite3 "$DB" "SELECT count(*) FROM flows WHERE (src_pod = 'ns1/client-1' OR dst_pod = 'ns1/client-1'
  OR pod = 'ns1/client-1') AND dport = 443")
expect 0 "$PODCAP" top --db "$DB" --pod ns1/client-1 --by dport --metric flows --json 'dport == 443'
[ "$("$JQ" -r .total "$T/out")" = "$npod" ] && [ "$npod" -gt 0 ] && ok "--pod ns1/client-1 'dport == 443': $npod flows, as SQL" ||
	fail "--pod: $("$JQ" -c . "$T/out") vs $npod"
expect 2 "$PODCAP" top --db "$DB" --pod ns1/client-1 'dport == 443) or (1'
grep -q "closes nothing" "$T/err" && ok "--pod with 'dport == 443) or (1': exit 2" || fail "--pod unbalanced: $(cat "$T/err")"

# the rollup answers app without a filter (an empty filter is none), a scan with one
expect 0 "$PODCAP" top --db "$DB" --json ''
[ "$("$JQ" -r .source "$T/out")" = rollup ] && ok "by app, no filter: from the rollup" || fail "rollup: $(cat "$T/out")"
# several keys: one object each, in order
expect 0 "$PODCAP" top --db "$DB" --by app,src_pod,dport --limit 3 --json 'dport == 443'
[ "$("$JQ" -r '[.tops[].by] | join(",")' "$T/out")" = app,src_pod,dport ] &&
	[ "$("$JQ" -r '[.tops[].total] | unique | length' "$T/out")" = 1 ] &&
	ok "--by app,src_pod,dport: three answers, one total" || fail "several keys: $(head -c 300 "$T/out")"
# the table: a heading per key, the rows, other, total
expect 0 "$PODCAP" top --db "$DB" --by src_ns,dport --metric flows --limit 4
head -1 "$T/out" | grep -q '^SRC_NS  *flows  *share   (counted from the flows)$' &&
	grep -q '^(none)  *4000  *20.0%$' "$T/out" && grep -q '^total  *20000$' "$T/out" &&
	[ "$(grep -c '^total' "$T/out")" = 2 ] && ok "table: headings, (none) 4000 of 20000 (20.0%), totals" ||
	fail "table: $(cat "$T/out")"

# --server prints what --db prints
"$PODCAP" serve --db "$DB" --listen 127.0.0.1:0 >"$T/serve.log" 2>&1 &
SERVE=$!
port=
for _ in $(seq 1 50); do
	port=$(sed -n 's|.*listening on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$T/serve.log" | head -1)
	[ -n "$port" ] && break
	sleep 0.1
done
if [ -z "$port" ]; then
	fail "podcap serve did not start: $(cat "$T/serve.log")"
else
	for args in "--by app" "--by src_pod,dst_pod,service --metric flows --limit 4" \
		"--by dport --json --since 2000-01-01T00:00:00Z dport > 1000" "--by host,app --limit 3 proto == udp"; do
		# shellcheck disable=SC2086
		"$PODCAP" top --db "$DB" $args >"$T/a" 2>&1
		# shellcheck disable=SC2086
		"$PODCAP" top --server "http://127.0.0.1:$port" $args >"$T/b" 2>&1
		cmp -s "$T/a" "$T/b" && [ -s "$T/a" ] && ok "top $args: --server prints what --db prints ($(wc -c <"$T/a") bytes)" ||
			fail "top $args: --server differs: $(diff "$T/a" "$T/b" | head -5)"
	done
	expect 2 "$PODCAP" top --server "http://127.0.0.1:$port" 'dport =='
fi

# bad usage: 2 with the usage line; a bad database: 1
for bad in "--by bogus" "--by app,nope" "--by a,b,c,d,e,f,g,h,i" "--metric joules" "--limit 0" "--limit 1001" \
	"--since yesterday" "--nosuch" "dport == " "app == TLS or"; do
	# shellcheck disable=SC2086
	expect 2 "$PODCAP" top --db "$DB" $bad
	grep -q '^usage: podcap top' "$T/err" || fail "'$bad': no usage line: $(head -c 200 "$T/err")"
done
expect 2 "$PODCAP" top
expect 2 "$PODCAP" top --db "$DB" --server http://127.0.0.1:1
expect 2 "$PODCAP" top --db "$DB" --token-file /etc/hostname
expect 1 "$PODCAP" top --db "$T/nonexistent.db"
printf 'not a database' >"$T/junk.db"
expect 1 "$PODCAP" top --db "$T/junk.db"
expect 0 "$PODCAP" top --help
grep -q 'src_workload' "$T/out" || fail "--help lists the keys"
[ "$fails" = 0 ] && echo "top-cli: all passed" || echo "top-cli: $fails failed"
[ "$fails" = 0 ]
