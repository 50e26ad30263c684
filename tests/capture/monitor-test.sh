#!/usr/bin/env bash
# A veth created while the monitor runs is reported (and classified as a pod
# veth); the time it took is printed, not asserted.
# usage: monitor-test.sh SRCDIR CAP_PROBE
SRC=$1 PROBE=$2
. "$SRC/tests/capture/lib.sh"
require_root monitor-test
NS=pc-tmon-$$ POD=pc-tmonpod-$$
trap cleanup_ns EXIT
make_ns "$NS"
make_ns "$POD"
OUT=$(mktemp)
start_ready "$OUT" ip netns exec "$NS" "$PROBE" monitor vethdead01 10
ip -n "$NS" link add vethdead01 type veth peer name eth0 netns "$POD"
wait "$BG_PID" || { cat "$OUT"; fail "new veth not reported"; }
cat "$OUT"
grep -q "^seen vethdead01 pod-veth after" "$OUT" || fail "wrong report"
rm -f "$OUT"
pass "new veth discovered"
