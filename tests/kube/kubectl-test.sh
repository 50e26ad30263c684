#!/usr/bin/env bash
# The real kubectl against apiserver-replay.py: the recordings must be what a
# real client accepts (get, wide output, JSON decoding, watch), and the
# manifests in deploy/ must pass `kubectl apply --dry-run=client`, which
# validates them against the OpenAPI schema the replay server serves (the real
# v1.27.0 one).  Runs every kubectl in $PODCAP_KUBECTL (space-separated paths,
# e.g. Debian's kubernetes-client 1.20 unpacked next to another kubectl) and
# the one on PATH; skips when there is none.
#   kubectl-test.sh SOURCE_ROOT
set -euo pipefail
src=$1
py=/usr/bin/python3
kubectls=()
for k in ${PODCAP_KUBECTL:-} $(command -v kubectl || true); do
  [ -x "$k" ] || continue
  real=$(readlink -f "$k")
  for seen in "${kubectls[@]+"${kubectls[@]}"}"; do [ "$(readlink -f "$seen")" = "$real" ] && continue 2; done
  kubectls+=("$k")
done
if [ ${#kubectls[@]} = 0 ]; then
  echo "SKIP: no kubectl (install kubernetes-client, or set PODCAP_KUBECTL)"; exit 77
fi
tmp=$(mktemp -d /tmp/podcap-kubectl.XXXXXX)
pid=
cleanup() {
  [ -z "$pid" ] || { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  rm -rf "$tmp"
}
trap cleanup EXIT
"$py" "$src/tests/kube/apiserver-replay.py" --recordings "$src/tests/kube/recordings" \
  --port-file "$tmp/port" 2>"$tmp/replay.log" &
pid=$!
for i in $(seq 1 100); do [ -s "$tmp/port" ] && break; sleep 0.1; done
port=$(cat "$tmp/port")
cat >"$tmp/kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: replay
  cluster:
    server: http://127.0.0.1:$port
contexts:
- name: replay
  context:
    cluster: replay
    user: tester
current-context: replay
users:
- name: tester
  user:
    token: replay-token
KC
fail=0
bad() { echo "FAIL: $*"; fail=1; }
expect() { # file pattern what
  grep -Eq -- "$2" "$1" || { bad "$3: no /$2/ in:"; sed 's/^/    /' "$1"; }
}
# A manifest with a misspelled field: validation must refuse it.
sed 's/hostNetwork: true/hostNetwrok: true/' "$src/deploy/30-daemonset.yaml" >"$tmp/bad-ds.yaml"

for k in "${kubectls[@]}"; do
  kc=(env HOME="$tmp/home-$RANDOM" "$k" --kubeconfig "$tmp/kubeconfig")
  ver=$("$k" version --client 2>/dev/null | head -1 || true)
  echo "== $k: $ver"
  "${kc[@]}" get pods -A -o wide >"$tmp/out" 2>&1 || bad "get pods -A -o wide failed"
  cat "$tmp/out"
  for row in "default +web-1 .*Running .*10.244.1.10 +pc-node1" \
             "kube-system +coredns .*10.244.1.11 +pc-node1" \
             "default +client-1 .*10.244.1.12 +pc-node1" \
             "default +tls-1 .*10.244.2.10 +pc-node2" \
             "default +client-2 .*10.244.2.11 +pc-node2" \
             "default +api-1 .*10.244.3.10 +pc-node2" \
             "default +web-2 .*10.244.2.12 +pc-node2"; do
    expect "$tmp/out" "$row" "get pods -o wide"
  done
  "${kc[@]}" get svc,endpointslices -A >"$tmp/out" 2>&1 || bad "get svc,endpointslices failed"
  cat "$tmp/out"
  expect "$tmp/out" "kube-system +service/kube-dns +ClusterIP +10.96.0.10 .*53/UDP,53/TCP " "services"
  expect "$tmp/out" "default +service/api +ClusterIP +10.96.0.90 .*80/TCP" "services"
  expect "$tmp/out" "default +service/web +NodePort +10.96.0.80 .*80:30080/TCP" "services"
  expect "$tmp/out" "endpointslice.discovery.k8s.io/kube-dns-[a-z0-9]+ +IPv4 .*10.244.1.11" "endpointslices"
  expect "$tmp/out" "endpointslice.discovery.k8s.io/api-[a-z0-9]+ +IPv4 +8080 +10.244.3.10" "endpointslices"
  expect "$tmp/out" "endpointslice.discovery.k8s.io/web-[a-z0-9]+ +IPv4 +8080 +10.244.1.10,10.244.2.12" "endpointslices"
  # Typed decoding of the raw lists (no server-side table).
  "${kc[@]}" get pods,svc,endpointslices -A -o json >"$tmp/json" 2>&1 || bad "get -o json failed"
  "$py" - "$tmp/json" <<'PY' || bad "get -o json content"
import json, sys
d = json.load(open(sys.argv[1]))
kinds = [i["kind"] for i in d["items"]]
assert kinds.count("Pod") == 7 and kinds.count("Service") == 3 and kinds.count("EndpointSlice") == 3, kinds
assert all(i["metadata"].get("name") for i in d["items"])
print("   -o json: 7 pods, 3 services, 3 endpointslices decoded")
PY
  # A short watch: the recorded stream's MODIFIED and ADDED events show up.
  timeout 5 "${kc[@]}" get pods -n default --watch >"$tmp/out" 2>&1 || true
  cat "$tmp/out"
  expect "$tmp/out" "^client-3 +1/1 +Running" "watch (ADDED client-3)"
  [ "$(grep -c '^web-1 ' "$tmp/out")" -ge 2 ] || bad "watch: web-1 listed then MODIFIED"
  # The manifests.
  "${kc[@]}" apply --dry-run=client -f "$src/deploy/" >"$tmp/out" 2>&1 || bad "apply --dry-run=client -f deploy/ failed"
  cat "$tmp/out"
  for o in namespace/podcap serviceaccount/podcap clusterrole.rbac.authorization.k8s.io/podcap \
           clusterrolebinding.rbac.authorization.k8s.io/podcap daemonset.apps/podcap service/podcap; do
    expect "$tmp/out" "^$o created \(dry run\)" "apply"
  done
  if "${kc[@]}" apply --dry-run=client -f "$tmp/bad-ds.yaml" >"$tmp/out" 2>&1; then
    bad "a misspelled field was not refused"
  fi
  cat "$tmp/out"
  expect "$tmp/out" 'unknown field "hostNetwrok"' "validation against the served schema"
done
curl -s "http://127.0.0.1:$port/_control/requests" | "$py" -c '
import json, sys
paths = [r["path"] for r in json.load(sys.stdin)]
assert "/openapi/v2" in paths, "kubectl never fetched the OpenAPI schema"
print("   kubectl fetched: " + ", ".join(sorted(set(p for p in paths if not p.startswith("/api/v1/namespaces")))))
' || bad "request log"
[ $fail = 0 ] && echo ok
exit $fail
