# Shared by the capture tests: root check, namespace helpers, assertions.
# Every namespace a test makes is named pc-t<something>-$$ and removed by the trap.
set -euo pipefail

require_root() {
  if [ "$(id -u)" != 0 ]; then
    echo "SKIP: $1 needs root (network namespaces, tc, BPF)"
    exit 77
  fi
}

TEST_NS=()
cleanup_ns() {
  local ns pid
  for ns in "${TEST_NS[@]}"; do
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill "$pid" 2>/dev/null || true; done
    ip netns del "$ns" 2>/dev/null || true
  done
}

make_ns() { ip netns add "$1"; TEST_NS+=("$1"); ip -n "$1" link set lo up; }

fail() { echo "FAIL: $*"; exit 1; }
pass() { echo "ok: $*"; }

# Starts "$@" in the background with output to $1 (a file) and waits for "ready".
start_ready() { # outfile cmd...
  local out=$1; shift
  "$@" >"$out" 2>&1 &
  BG_PID=$!
  local i
  for i in $(seq 1 200); do
    grep -q '^ready' "$out" 2>/dev/null && return 0
    kill -0 "$BG_PID" 2>/dev/null || { cat "$out"; fail "helper exited early: $*"; }
    sleep 0.05
  done
  cat "$out"
  fail "helper never became ready: $*"
}
