#!/usr/bin/env bash
# Are the capabilities deploy/30-daemonset.yaml grants the ones `podcap run`
# needs?  Runs the agent in the lab's node namespace as the container would:
# uid 0 with the bounding set cut down to the manifest's list and
# no_new_privs, once with the full list and once without each capability,
# with lab traffic, and reports which backend ran and whether flows came out.
# Needs root and the lab (serialised with the other sessions by the lab lock).
#   caps-test.sh SOURCE_ROOT PODCAP_BINARY
set -euo pipefail
src=$1 podcap=$2
if [ "$(id -u)" != 0 ]; then echo "SKIP: needs root (network namespaces, BPF)"; exit 77; fi
command -v setpriv >/dev/null || { echo "SKIP: no setpriv (util-linux)"; exit 77; }
lab="$src/lab/lab"
# the lab's own lock (it sees an ancestor holding it, so an outer flock is fine)
[ -n "${PODCAP_LAB_LOCKED:-}" ] || exec "$lab" locked env PODCAP_LAB_LOCKED=1 "$0" "$@"
was_up=0
"$lab" status >/dev/null 2>&1 && was_up=1
if [ $was_up = 0 ]; then "$lab" up >/dev/null || { echo "SKIP: the lab does not come up"; exit 77; }; fi
tmp=$(mktemp -d /tmp/podcap-caps.XXXXXX)
cleanup() { rm -rf "$tmp"; [ $was_up = 1 ] || "$lab" down >/dev/null 2>&1 || true; }
trap cleanup EXIT
# The manifest's list, read from the manifest itself.
manifest=$(sed -n '/^ *add:/,/^ *resources:/p' "$src/deploy/30-daemonset.yaml" |
           sed -n 's/^ *- \([A-Z_]*\)$/\1/p' | tr 'A-Z' 'a-z')
echo "manifest capabilities: $(echo $manifest)"
# run LABEL BACKEND CAPS... -> sets $flows and $backend
run() {
  local label=$1 be=$2; shift 2
  local set="-all" c
  for c in "$@"; do set="$set,+$c"; done
  rm -f "$tmp/f.db"*
  ( sleep 1; "$lab" traffic 3 >/dev/null 2>&1 ) &
  local tp=$!
  ip netns exec pc-node1 setpriv --bounding-set "$set" --inh-caps -all --no-new-privs -- \
    "$podcap" run --backend "$be" --db "$tmp/f.db" --duration 5 --stats-interval 0 \
    >"$tmp/out" 2>&1 || true
  wait $tp || true
  flows=$(sqlite3 "$tmp/f.db" 'select count(*) from flows' 2>/dev/null || echo 0)
  backend=$(sed -n 's/.*final .* backend=\([a-z]*\).*/\1/p' "$tmp/out" | head -1)
  printf '%-34s flows=%-5s backend=%-6s %s\n' "$label" "$flows" "${backend:-none}" \
    "$(grep -m1 -E 'unavailable|Operation not permitted|cannot|error' "$tmp/out" | cut -c1-100 || true)"
}
fail=0
bad() { echo "FAIL: $*"; fail=1; }
without() { echo $manifest | tr ' ' '\n' | grep -vx "$1" | tr '\n' ' '; }
run "manifest set, eBPF" ebpf $manifest
[ "$flows" -gt 0 ] && [ "$backend" = ebpf ] || bad "the manifest's capabilities do not run the eBPF backend"
run "manifest set, libpcap" pcap $manifest
[ "$flows" -gt 0 ] && [ "$backend" = pcap ] || bad "the manifest's capabilities do not run libpcap"
run "without bpf, eBPF" ebpf $(without bpf)
[ "$backend" != ebpf ] || bad "eBPF ran without CAP_BPF: BPF is not needed"
run "without net_admin, eBPF" ebpf $(without net_admin)
[ "$backend" != ebpf ] || bad "eBPF ran without CAP_NET_ADMIN: NET_ADMIN is not needed"
run "without net_raw, libpcap" pcap $(without net_raw)
[ "$flows" = 0 ] || bad "libpcap captured without CAP_NET_RAW: NET_RAW is not needed"
[ $fail = 0 ] && echo ok
exit $fail
