#!/usr/bin/env bash
# podcapdump called the way Wireshark calls an extcap (sshdump's protocol), against
# `podcap run --listen` on loopback capturing `lo` (root; skips otherwise):
# --extcap-interfaces lists the agent's pod and interfaces (the pod from an
# inventory that names lo as its veth), --extcap-dlts and --extcap-config answer in
# extcap's syntax, and `--capture --fifo` streams pcapng into a fifo that tshark
# reads as Wireshark would, with the capture filter applied; SIGTERM (Wireshark's
# stop) leaves a valid end.  Bad calls exit 2 with a message.  Then Wireshark
# itself: with podcapdump bind-mounted into its extcap folder (a private mount
# namespace), `tshark -D` lists the interfaces and `tshark -i POD-INTERFACE -f
# BPF -c 20` captures through dumpcap and podcapdump.  The agent asks for a token.
#   extcap.sh PODCAP
set -u
podcap=${1:?usage: extcap.sh PODCAP}
if [ "$(id -u)" != 0 ]; then echo "SKIP: extcap.sh needs root (live capture on lo)"; exit 77; fi
for t in tshark curl /usr/bin/python3; do command -v $t >/dev/null || { echo "SKIP: $t missing"; exit 77; }; done
tmp=$(mktemp -d /tmp/pc-extcap.XXXXXX)
agent="" dump="" reader=""
cleanup() {
  for p in $dump $reader; do kill -9 "$p" 2>/dev/null; done
  [ -n "$agent" ] && kill -TERM "$agent" 2>/dev/null && wait "$agent" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
fail=0
ok() { echo "ok - $*"; }
bad() { echo "FAIL - $*"; fail=1; }

ln -s "$(realpath "$podcap")" "$tmp/podcapdump"
dump_bin=$tmp/podcapdump
cat >"$tmp/pods.json" <<'EOF'
{"pods": [{"name": "web-1", "namespace": "shop", "host_veth": "lo", "ips": ["127.0.0.1"]}]}
EOF
# The agent asks for a token, as deploy/'s does.
od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$tmp/token"
"$podcap" run --backend pcap --iface lo --db "$tmp/f.db" --inventory "$tmp/pods.json" \
  --listen 127.0.0.1:0 --token-file "$tmp/token" --stats-interval 0 >"$tmp/agent.log" 2>&1 &
agent=$!
for i in $(seq 1 100); do grep -q 'capturing on lo' "$tmp/agent.log" && grep -q 'API and web page on' "$tmp/agent.log" && break; sleep 0.1; done
url=$(grep -o 'http://127.0.0.1:[0-9]*' "$tmp/agent.log" | head -1)
[ -n "$url" ] || { cat "$tmp/agent.log"; echo "FAIL - agent did not start"; exit 1; }
sleep 1.2 # the capture publishes its interfaces to the API once a second

# --extcap-interfaces (Wireshark passes no options then: the agent is $PODCAP_SERVER,
# its token $PODCAP_TOKEN_FILE); without the token, only the generic interface
PODCAP_SERVER=$url "$dump_bin" --extcap-interfaces >"$tmp/ifs0" 2>"$tmp/err"; rc=$?
[ $rc = 0 ] && [ "$(grep -c '^interface ' "$tmp/ifs0")" = 1 ] && grep -q 401 "$tmp/err" &&
  ok "listing without the token: the generic interface only; stderr: $(head -1 "$tmp/err")" ||
  bad "no token: rc $rc $(cat "$tmp/ifs0" "$tmp/err")"
PODCAP_SERVER=$url PODCAP_TOKEN_FILE=$tmp/token "$dump_bin" --extcap-interfaces --extcap-version=4.0 >"$tmp/ifs" 2>"$tmp/err"; rc=$?
head -1 "$tmp/ifs" | grep -q '^extcap {version=[0-9.]*}{display=podcap: ' && ok "extcap line: $(head -1 "$tmp/ifs" | cut -c1-60)..." ||
  bad "extcap line: $(head -1 "$tmp/ifs")"
want="podcap podcap-if-lo podcap-pod-shop.web-1"
got=$(grep '^interface ' "$tmp/ifs" | sed 's/^interface {value=\([^}]*\)}.*/\1/' | sort | paste -sd' ')
[ $rc = 0 ] && [ "$got" = "$want" ] && ok "interfaces: $got" || bad "interfaces: rc $rc '$got' (want '$want'): $(cat "$tmp/err")"
grep -q '{value=podcap-pod-shop.web-1}{display=podcap: pod shop/web-1 (http' "$tmp/ifs" && ok "the pod's display name" ||
  bad "pod display: $(grep pod "$tmp/ifs")"
# an agent that does not answer: only the generic interface, still exit 0
PODCAP_SERVER=http://127.0.0.1:1 "$dump_bin" --extcap-interfaces >"$tmp/ifs2" 2>/dev/null; rc=$?
[ $rc = 0 ] && [ "$(grep -c '^interface ' "$tmp/ifs2")" = 1 ] && ok "no agent: the generic interface only" ||
  bad "no agent: rc $rc $(cat "$tmp/ifs2")"
# --extcap-dlts, --extcap-config
out=$("$dump_bin" --extcap-interface podcap-pod-shop.web-1 --extcap-dlts)
[ "$out" = "dlt {number=1}{name=EN10MB}{display=Ethernet (pcapng: per interface)}" ] && ok "dlts: $out" || bad "dlts: $out"
"$dump_bin" --extcap-interface podcap --extcap-config --server "$url" >"$tmp/cfg"
calls=$(sed -n 's/^arg {number=[0-9]*}{call=\([^}]*\)}.*/\1/p' "$tmp/cfg" | paste -sd' ')
[ "$calls" = "--server --token-file --cacert --target --inner --snaplen --count" ] &&
  grep -q "{call=--server}.*{default=$url}" "$tmp/cfg" && ok "config: $calls" || bad "config: $calls"
n=$("$dump_bin" --extcap-interface podcap-if-lo --extcap-config | grep -c -- '--target')
[ "$n" = 0 ] && ok "config of a listed interface: no --target" || bad "config of podcap-if-lo asks a target"

# bad calls
"$dump_bin" --extcap-interface nosuch --extcap-dlts 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "unknown interface 'nosuch'" "$tmp/err" && ok "unknown interface: exit 2" || bad "unknown interface: rc $rc"
"$dump_bin" --extcap-interface podcap --capture --fifo "$tmp/none" --server "$url" 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "needs --target" "$tmp/err" && ok "generic interface without --target: exit 2" || bad "no target: rc $rc"
"$dump_bin" --bogus 2>/dev/null; rc=$?
[ $rc = 2 ] && ok "unknown option: exit 2" || bad "unknown option: rc $rc"
# --target with an interface that names what it captures: refused, not ignored
"$dump_bin" --extcap-interface podcap-if-lo --capture --fifo "$tmp/none" --server "$url" --target web 2>"$tmp/err"; rc=$?
[ $rc = 2 ] && grep -q "is for the interface 'podcap'" "$tmp/err" && ok "--target with podcap-if-lo: exit 2" ||
  bad "--target with podcap-if-lo: rc $rc $(cat "$tmp/err")"
# a target that starts with '-' is a target (a flow filter here), not an option of sniff
"$dump_bin" --extcap-interface podcap --capture --fifo "$tmp/none" --server "$url" --target='-w/tmp/x' 2>"$tmp/err"; rc=$?
grep -q "what to capture" "$tmp/err" && bad "--target=-w...: parsed as an option: $(cat "$tmp/err")" ||
  ok "--target=-w/tmp/x: a target (rc $rc: $(head -1 "$tmp/err"))"

# --capture --fifo, read by tshark as Wireshark reads it; the agent captures lo,
# so the capture filter keeps the stream's own TCP out of it.
send_udp() { /usr/bin/python3 -c 'import socket,sys,time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(int(sys.argv[1])):
    s.sendto(sys.argv[2].encode() + b" %d" % i, ("127.0.0.1", 9999)); time.sleep(0.002)' "$@"; }
marked=706f646361706475 # "podcapdu": the counted packets' first 8 bytes
capture() { # IFACE EXTRA... -> $tmp/read.txt, $tmp/dump.err, dump's exit status in $drc
  rm -f "$tmp/fifo" "$tmp/read.txt"; mkfifo "$tmp/fifo"; : >"$tmp/read.txt"
  tshark -l -r "$tmp/fifo" -T fields -e frame.interface_name -e udp.dstport -e data.data >"$tmp/read.txt" 2>"$tmp/tshark.err" &
  reader=$!
  "$dump_bin" --extcap-interface "$1" --capture --fifo "$tmp/fifo" --extcap-capture-filter 'udp port 9999' \
    --server "$url" --token-file "$tmp/token" "${@:2}" 2>"$tmp/dump.err" &
  dump=$!
  # the stream is live once tshark prints a warm-up packet; then 50 counted ones
  for i in $(seq 1 100); do [ -s "$tmp/read.txt" ] && break; send_udp 1 warmup; sleep 0.05; done
  send_udp 50 podcapdump
  sleep 0.5
  kill -TERM $dump 2>/dev/null
  wait $dump; drc=$?; dump=""
  wait $reader; reader=""
}
capture podcap-pod-shop.web-1
n=$(grep -c $'\t9999\t'$marked "$tmp/read.txt")
[ $drc = 0 ] && [ "$n" = 50 ] && ok "pod interface: tshark read $n packets from the fifo, $(tail -1 "$tmp/dump.err")" ||
  bad "pod capture: exit $drc, $n packets: $(cat "$tmp/dump.err" "$tmp/tshark.err")"
[ "$(cut -f1 "$tmp/read.txt" | sort -u)" = "lo" ] && ok "the fifo's interface is named lo" || bad "names: $(cut -f1 "$tmp/read.txt" | sort -u)"
capture podcap --target lo --snaplen 50
n=$(grep -c $'\t9999\t'$marked'$' "$tmp/read.txt")
[ $drc = 0 ] && [ "$n" = 50 ] && ok "generic interface with --target lo --snaplen 50: $n packets, 8 bytes of data each" ||
  bad "--target lo: exit $drc, $n: $(cat "$tmp/dump.err")"
capture podcap-if-lo --count 10
n=$(wc -l <"$tmp/read.txt")
[ $drc = 0 ] && [ "$n" = 10 ] && ok "interface podcap-if-lo, --count 10: $n packets, $(tail -1 "$tmp/dump.err")" ||
  bad "--count 10: exit $drc, $n: $(cat "$tmp/dump.err")"
# a bad capture filter: libpcap's words on stderr (Wireshark shows them), exit 2
rm -f "$tmp/fifo"; mkfifo "$tmp/fifo"
( cat "$tmp/fifo" >/dev/null ) &
reader=$!
"$dump_bin" --extcap-interface podcap-if-lo --capture --fifo "$tmp/fifo" --extcap-capture-filter 'udp portt 1' \
  --server "$url" --token-file "$tmp/token" 2>"$tmp/err"; rc=$?
wait $reader; reader=""
[ $rc = 2 ] && grep -q "400: bpf: .*syntax error" "$tmp/err" && ok "bad capture filter: exit 2, $(cat "$tmp/err")" ||
  bad "bad filter: rc $rc $(cat "$tmp/err")"

# Wireshark itself (tshark and dumpcap): podcapdump in Wireshark's extcap folder,
# bind-mounted in a mount namespace of this test's own (the system's folder is
# not touched): `tshark -D` lists the agent's interfaces, and `tshark -i` of the
# pod's captures through it, with the capture filter, until -c.
extdir=$(tshark -G folders 2>/dev/null | sed -n 's/^Extcap path:[[:space:]]*//p' | head -1)
if command -v unshare >/dev/null && [ -d "$extdir" ]; then
  mkdir "$tmp/extcap"
  for f in "$extdir"/*; do [ -e "$f" ] && ln -s "$f" "$tmp/extcap/"; done
  ln -s "$(realpath "$podcap")" "$tmp/extcap/podcapdump"
  ws() { PODCAP_SERVER=$url PODCAP_TOKEN_FILE=$tmp/token HOME=$tmp/home \
    timeout 60 unshare -m --propagation private sh -c 'mount --bind "$1" "$2" && shift 2 && exec tshark "$@"' \
    sh "$tmp/extcap" "$extdir" "$@"; }
  ws -D >"$tmp/D" 2>/dev/null
  got=$(sed -n 's/^[0-9]*\. \(podcap[^ ]*\) .*/\1/p' "$tmp/D" | sort | paste -sd' ')
  [ "$got" = "$want" ] && ok "tshark -D lists them: $got" || bad "tshark -D: '$got': $(cat "$tmp/D")"
  ( for i in $(seq 1 1000); do send_udp 1 wireshark; sleep 0.01; done ) &
  sp=$!
  ws -i podcap-pod-shop.web-1 -f 'udp port 9999' -c 20 -T fields -e frame.interface_name -e udp.dstport \
    >"$tmp/ws.txt" 2>"$tmp/ws.err"; rc=$?
  kill $sp 2>/dev/null; wait $sp 2>/dev/null
  n=$(grep -c $'^lo\t9999$' "$tmp/ws.txt")
  [ $rc = 0 ] && [ "$n" = 20 ] && ok "tshark -i podcap-pod-shop.web-1 -f 'udp port 9999' -c 20: $n packets through dumpcap and podcapdump" ||
    bad "tshark -i: rc $rc, $n packets: $(grep -v dangerous "$tmp/ws.err" | head -5)"
else
  echo "ok - # SKIP Wireshark itself: no unshare or no extcap folder"
fi

kill -INT $agent; wait $agent; st=$?; agent=""
[ $st = 0 ] && ok "agent exit 0" || bad "agent exit $st"
exit $fail
