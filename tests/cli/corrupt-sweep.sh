#!/usr/bin/env bash
# Issue 17: the corruption sweep.  Every corpus capture x SEEDS seeds of
# `editcap -E 0.02` (packet bytes damaged) and of corrupt-flip.py (pcap / pcapng
# framing damaged: lengths, types, link types, interface ids, cut short) goes
# through `podcap read --db --store`, then `podcap flows --csv` and `podcap export`
# of every flow, with the podcap given (build it with ASan+UBSan).  A case passes
# when no command is killed by a signal or a timeout, every exit status is 0, 1
# (damage reported) or nothing else, and the sanitizers wrote no report.
#
#   corrupt-sweep.sh PODCAP [--short] [--seeds N] [--jobs N] [--corpus DIR] [--report FILE]
#
# --short: the first 8 corpus files, 1 seed each (the CI run; about a minute).
# The full run (450 files x 5 seeds x 2 damages = 4,500 cases) takes about an hour
# on 2 cores: `meson test -C build-asan --suite sweep` or run it by hand.
# Exit 77 without the corpus (../shared/corpus/ndpi/pcap or $PODCAP_CORPUS/pcap)
# or without editcap.
set -u
podcap=$(readlink -f "${1:?usage: corrupt-sweep.sh PODCAP [--short] [--seeds N] [--jobs N] [--corpus DIR]}")
shift
here=$(cd "$(dirname "$0")" && pwd)
seeds=5 short=0 jobs=2 report=""
corpus=${PODCAP_CORPUS:-$here/../../../shared/corpus/ndpi}/pcap
while [ $# -gt 0 ]; do
  case $1 in
  --short) short=1; seeds=1 ;;
  --seeds) seeds=$2; shift ;;
  --jobs) jobs=$2; shift ;;
  --corpus) corpus=$2; shift ;;
  --report) report=$2; shift ;;
  *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
[ -d "$corpus" ] || { echo "SKIP: no corpus at $corpus"; exit 77; }
command -v editcap >/dev/null || { echo "SKIP: editcap not installed (wireshark-common)"; exit 77; }
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
logs=$tmp/san; mkdir -p "$logs"
# every sanitizer report becomes a file in $logs; LeakSanitizer included
export ASAN_OPTIONS="log_path=$logs/asan:abort_on_error=0:detect_leaks=1:allocator_may_return_null=1"
export UBSAN_OPTIONS="log_path=$logs/ubsan:print_stacktrace=1:halt_on_error=1"

files=()
for f in "$corpus"/*; do
  case $f in *.pcap|*.pcapng|*.cap) files+=("$f") ;; esac
done
[ $short = 1 ] && files=("${files[@]:0:8}")

# one case: a damaged copy of a file through read, flows and export; prints one
# line "STATUS kind seed file read/flows/export exits"
one() {
  local f=$1 kind=$2 seed=$3 w=$tmp/w-$kind-$seed-$BASHPID
  mkdir -p "$w"
  local in=$w/in.${f##*.}
  if [ "$kind" = editcap ]; then
    local fmt=pcapng
    [ "${f##*.}" = pcapng ] || fmt=pcap
    editcap -E 0.02 --seed "$seed" -F "$fmt" "$f" "$in" 2>/dev/null || cp "$f" "$in"
  else
    /usr/bin/python3 "$here/corrupt-flip.py" "$seed" "$f" "$in"
  fi
  local r e1 e2 e3 status=ok
  timeout 300 "$podcap" read "$in" --db "$w/f.db" --store "$w/s" --quiet >/dev/null 2>"$w/err"; e1=$?
  timeout 120 "$podcap" flows --db "$w/f.db" --csv --limit 0 >/dev/null 2>>"$w/err"; e2=$?
  [ -e "$w/f.db" ] || e2=-
  timeout 300 "$podcap" export --db "$w/f.db" --filter 'id > 0' --limit 1000000 -w "$w/out.pcapng" >/dev/null 2>>"$w/err"; e3=$?
  [ -e "$w/f.db" ] || e3=-
  for r in $e1 $e2 $e3; do
    case $r in 0|1|-) ;; *) status=FAIL ;; esac
  done
  echo "$status $kind $seed $(basename "$f") $e1/$e2/$e3"
  [ $status = FAIL ] && { echo "  stderr:"; head -5 "$w/err" | sed 's/^/    /'; }
  rm -rf "$w"
}
export -f one
export tmp podcap here

start=$(date +%s)
for f in "${files[@]}"; do
  for s in $(seq 1 "$seeds"); do
    printf '%s\0%s\0%s\0' "$f" editcap "$s"
    printf '%s\0%s\0%s\0' "$f" flip "$s"
  done
done | xargs -0 -n 3 -P "$jobs" bash -c 'one "$0" "$1" "$2"' > "$tmp/results"
secs=$(( $(date +%s) - start ))

cases=$(grep -c '^\(ok\|FAIL\)' "$tmp/results")
failed=$(grep -c '^FAIL' "$tmp/results")
reports=$(ls "$logs" | wc -l)
read0=$(awk '/^(ok|FAIL)/ {split($5, e, "/"); if (e[1] == 0) n++} END {print n + 0}' "$tmp/results")
read1=$(awk '/^(ok|FAIL)/ {split($5, e, "/"); if (e[1] == 1) n++} END {print n + 0}' "$tmp/results")
exp0=$(awk '/^(ok|FAIL)/ {split($5, e, "/"); if (e[3] == 0) n++} END {print n + 0}' "$tmp/results")
summary="corrupt-sweep: ${#files[@]} files x $seeds seeds x 2 damages = $cases cases in $secs s;"
summary+=" read exit 0: $read0, exit 1 (damage reported): $read1; exports with packets: $exp0;"
summary+=" bad exits or timeouts: $failed; sanitizer reports: $reports"
grep '^FAIL' -A6 "$tmp/results" | head -60
if [ "$reports" -gt 0 ]; then
  for r in "$logs"/*; do echo "== $r"; head -30 "$r"; done | head -120
fi
echo "$summary"
[ -n "$report" ] && { cp "$tmp/results" "$report"; echo "$summary" >> "$report"; }
[ "$failed" = 0 ] && [ "$reports" = 0 ]
