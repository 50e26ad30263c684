#!/usr/bin/env bash
# Bad command lines: a usage error (exit 2, a message, the usage line) before any
# work, never a silent default.  Each case is one a review found doing otherwise
# (2026-11-30): a directory or --config=FILE taken as an empty config (the agent
# started on its defaults), "no-dpi = no" turning nDPI off, empty shorthands
# selecting every flow (export --app '' wrote the whole store), --since after
# --until answered locally, bad --listen / --server values as runtime errors,
# sniff's filter errors only from the agent, a '[' left on stdout by a failed
# flows --json, and a few messages.
#   usage.sh PODCAP
set -u
podcap=${1:?usage: usage.sh PODCAP}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
ok()  { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

# expect STATUS PATTERN -- command...: exit status, stderr matching PATTERN, and
# for status 2 the usage line.
expect() {
  local status=$1 pat=$2; shift 3
  "$@" >"$tmp/out" 2>"$tmp/err" </dev/null; local got=$?
  if [ $got -ge 124 ]; then bad "$*: exit $got (signal or timeout: it ran?)"; cat "$tmp/err"; return; fi
  if [ "$got" != "$status" ]; then bad "$*: exit $got, want $status"; cat "$tmp/err"; return; fi
  if [ -n "$pat" ] && ! grep -Eq -- "$pat" "$tmp/err"; then bad "$*: stderr does not match /$pat/"; cat "$tmp/err"; return; fi
  if [ "$status" = 2 ] && ! grep -q '^usage: podcap' "$tmp/err"; then bad "$*: no usage line"; cat "$tmp/err"; return; fi
  ok "$* -> $got: $(grep -v '^usage:' "$tmp/err" | head -1)"
}

/usr/bin/python3 - "$tmp" <<'EOF' || { echo "cannot build the test capture (python3-scapy missing?)"; exit 1; }
import sys, logging
logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
from scapy.all import Ether, IP, UDP, TCP, Raw, wrpcap
d = sys.argv[1]
pkts = []
for i in range(6):
    p = Ether() / IP(src="10.0.0.%d" % (i + 1), dst="10.0.1.1") / UDP(sport=1000 + i, dport=53) / Raw(b"x" * 20)
    p.time = 1700000000 + i
    pkts.append(p)
wrpcap(d + "/t.pcap", pkts)
EOF
"$podcap" read "$tmp/t.pcap" --db "$tmp/t.db" --store "$tmp/st" --quiet || { bad "read the test capture"; exit 1; }

# run: --config, however it is spelt, is read before anything runs (timeout: a
# case that starts the agent fails instead of capturing)
printf 'snaplen = 1\n' > "$tmp/bad.conf"
printf 'quiet = garbage\n' > "$tmp/switch.conf"
printf 'no-dpi = no\nquiet = yes\n' > "$tmp/good.conf"
expect 2 'is a directory' -- timeout 10 "$podcap" run --db "$tmp/r.db" --config "$tmp"
expect 2 'bad.conf:1: bad line' -- timeout 10 "$podcap" run --db "$tmp/r.db" --config="$tmp/bad.conf"
expect 2 'bad.conf:1: bad line' -- timeout 10 "$podcap" run --db "$tmp/r.db" --conf "$tmp/bad.conf"
expect 2 "takes no value, or yes / no \(not 'garbage'\)" -- timeout 10 "$podcap" run --db "$tmp/r.db" --config "$tmp/switch.conf"
# a good file is taken: the error is then the stray argument
expect 2 "unexpected argument 'extra'" -- timeout 10 "$podcap" run --db "$tmp/r.db" --config "$tmp/good.conf" extra
expect 2 'listen address .bogus.: expected HOST:PORT' -- timeout 10 "$podcap" run --db "$tmp/r.db" --listen bogus
expect 2 'expected HOST:PORT|port' -- timeout 10 "$podcap" serve --db "$tmp/t.db" --listen 127.0.0.1:99999
expect 2 'listen address' -- timeout 10 "$podcap" serve --db "$tmp/t.db" --listen ''

expect 1 '--store .*/nostore: No such file or directory' -- timeout 10 "$podcap" serve --db "$tmp/t.db" --store "$tmp/nostore" --listen 127.0.0.1:0

# empty shorthands select nothing rather than everything
expect 2 '--app: empty name' -- "$podcap" export --db "$tmp/t.db" --store "$tmp/st" --app '' -w "$tmp/all.pcapng"
[ ! -e "$tmp/all.pcapng" ] && ok "export --app '' wrote no file" || bad "export --app '' wrote $tmp/all.pcapng"
expect 2 '--ip: empty address' -- "$podcap" flows --db "$tmp/t.db" --ip ''
expect 2 '--pod: empty name' -- "$podcap" top --db "$tmp/t.db" --pod ''

# a range that ends before it starts, as the API says (400)
expect 2 '--since is after --until' -- "$podcap" flows --db "$tmp/t.db" --since 1700000008 --until 1700000002
expect 2 '--since is after --until' -- "$podcap" top --db "$tmp/t.db" --since 1700000008 --until 1700000002
expect 0 '' -- "$podcap" flows --db "$tmp/t.db" --since 1700000002 --until 1700000008

# --server: a URL the client can use, checked before connecting
for cmd in flows top; do
  expect 2 "--server '': expected http://HOST" -- "$podcap" $cmd --server ''
  expect 2 "--server 'ftp://x': expected http://HOST" -- "$podcap" $cmd --server ftp://x
done
expect 2 "--server 'localhost:7070': expected http://HOST" -- "$podcap" export --server localhost:7070 --flow 1 -w "$tmp/x.pcapng"
expect 2 "--server 'ftp://x'" -- "$podcap" sniff web --server ftp://x
# nothing listens on port 1: an error, exit 1, and nothing on stdout (was a '[')
expect 1 "127.0.0.1:1" -- "$podcap" flows --server http://127.0.0.1:1 --json
[ ! -s "$tmp/out" ] && ok "flows --json that failed wrote nothing on stdout" || bad "flows --json wrote '$(head -c 40 "$tmp/out")'"
expect 1 "127.0.0.1:1" -- "$podcap" sniff web --server http://127.0.0.1:1 -w "$tmp/s.pcapng"
grep -q 'packets (' "$tmp/err" && bad "sniff without a connection still printed a capture summary" || ok "sniff without a connection: only the error"

# sniff's flow filter is parsed here, with the position, without an agent
expect 2 'position 9: expected a value' -- "$podcap" sniff 'dport =='

# the usage line names every option --help lists (read's lacked --db-max-age, run's
# the flow table's and decoder's)
for cmd in read run; do
  u=$("$podcap" $cmd --help | head -1)
  miss=""
  for o in $("$podcap" $cmd --help | grep -oE '^  --[a-z-]+' | tr -d ' '); do
    case "$u" in *"$o"*) ;; *) miss="$miss $o";; esac
  done
  [ -z "$miss" ] && ok "$cmd: the usage line names every option" || bad "$cmd: not in the usage line:$miss"
done

# messages
expect 2 "unexpected argument 'extra'" -- "$podcap" store check "$tmp/st" extra
"$podcap" help decode >"$tmp/out" 2>&1 && head -1 "$tmp/out" | grep -q '^usage: podcap decode' \
  && ok "podcap help decode = decode --help" || { bad "podcap help decode"; head -3 "$tmp/out"; }
expect 2 "no command 'nosuch'" -- "$podcap" help nosuch
expect 1 'nonexist.json' -- "$podcap" read "$tmp/t.pcap" --db "$tmp/i.db" --inventory "$tmp/nonexist.json"
n=$(grep -c nonexist.json "$tmp/err")
[ "$n" = 1 ] && ok "a missing inventory is said once" || bad "a missing inventory is said $n times"

exit $fail
