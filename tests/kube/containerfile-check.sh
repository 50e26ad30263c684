#!/usr/bin/env bash
# The image cannot be built here; what can be checked is that deploy/Containerfile
# installs the Debian package of every library the built podcap binary links
# directly (apt brings their own dependencies).  Fails naming a missing one.
#   containerfile-check.sh SOURCE_ROOT PODCAP_BINARY
set -euo pipefail
src=$1 bin=$2
cf="$src/deploy/Containerfile"
command -v dpkg-query >/dev/null || { echo "SKIP: not a Debian system"; exit 77; }
pkgs=$(tr '\\\n' '  ' <"$cf" | sed -n 's/.*apt-get install -y --no-install-recommends\(.*\)&& rm -rf.*/\1/p')
base="libc6 libgcc-s1"  # in debian:12-slim already
fail=0
for lib in $(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'); do
  case $lib in lib[alt]san.so*|libubsan.so*) echo "  $lib: sanitizer build, not shipped"; continue ;; esac
  # (awk exits at the first match: ldconfig may then die of SIGPIPE, which
  # pipefail would turn into a failure of the whole test)
  path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|x86_64|AArch64|aarch64/ {print $NF; exit}' || true)
  [ -n "$path" ] || path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}' || true)
  # merged /usr: dpkg knows a library by one of its two paths
  pkg=$(dpkg-query -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1 || true)
  [ -n "$pkg" ] || pkg=$(dpkg-query -S "$path" 2>/dev/null | head -1 | cut -d: -f1 || true)
  [ -n "$pkg" ] || pkg=$(dpkg-query -S "${path#/usr}" 2>/dev/null | head -1 | cut -d: -f1 || true)
  case " $(echo $pkgs) $base " in
    *" $pkg "*) echo "  $lib -> $pkg: installed" ;;
    *) echo "FAIL: $lib comes from ${pkg:-no package}, which deploy/Containerfile does not install"; fail=1 ;;
  esac
done
[ $fail = 0 ] && echo ok
exit $fail
