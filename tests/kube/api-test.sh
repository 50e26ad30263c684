#!/usr/bin/env bash
# Runs test_kube_api against two replay servers: plain HTTP (kubeconfig) and
# HTTPS with a bearer token (in-cluster credentials).
#   api-test.sh SOURCE_ROOT TEST_BINARY
set -euo pipefail
src=$1 bin=$2
py=/usr/bin/python3
tmp=$(mktemp -d /tmp/podcap-kube-api.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$tmp"
}
trap cleanup EXIT
if ! openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=kube-apiserver \
     -addext "subjectAltName=IP:127.0.0.1,DNS:kubernetes.default.svc" \
     -keyout "$tmp/tls.key" -out "$tmp/ca.crt" >/dev/null 2>&1; then
  echo "SKIP: openssl cannot make a test certificate"; exit 77
fi
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=podcap/O=podcap" \
  -keyout "$tmp/client.key" -out "$tmp/client.crt" >/dev/null 2>&1
rec="$src/tests/kube/recordings"
"$py" "$src/tests/kube/apiserver-replay.py" --recordings "$rec" --port-file "$tmp/port" \
  2>"$tmp/replay.log" &
pids+=($!)
"$py" "$src/tests/kube/apiserver-replay.py" --recordings "$rec" --port-file "$tmp/tport" \
  --tls-cert "$tmp/ca.crt" --tls-key "$tmp/tls.key" --token in-cluster-token \
  2>"$tmp/replay-tls.log" &
pids+=($!)
"$py" "$src/tests/kube/apiserver-replay.py" --recordings "$rec" --port-file "$tmp/cport" \
  --tls-cert "$tmp/ca.crt" --tls-key "$tmp/tls.key" --client-ca "$tmp/client.crt" \
  2>"$tmp/replay-cert.log" &
pids+=($!)
for i in $(seq 1 200); do
  [ -s "$tmp/port" ] && [ -s "$tmp/tport" ] && [ -s "$tmp/cport" ] && break
  sleep 0.1
done
[ -s "$tmp/port" ] && [ -s "$tmp/tport" ] && [ -s "$tmp/cport" ] ||
  { echo "replay servers did not start"; cat "$tmp"/*.log; exit 1; }
# A kubeconfig as kind writes it: everything inline, base64.
b64() { base64 -w0 "$1"; }
cat >"$tmp/kubeconfig-certs" <<KC
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: $(b64 "$tmp/ca.crt")
    server: https://127.0.0.1:$(cat "$tmp/cport")
  name: kind-replay
contexts:
- context:
    cluster: kind-replay
    user: kind-replay
  name: kind-replay
current-context: kind-replay
kind: Config
preferences: {}
users:
- name: kind-replay
  user:
    client-certificate-data: $(b64 "$tmp/client.crt")
    client-key-data: $(b64 "$tmp/client.key")
KC
rc=0
"$bin" "http://127.0.0.1:$(cat "$tmp/port")" "https://127.0.0.1:$(cat "$tmp/tport")" \
  "$tmp/ca.crt" in-cluster-token "$tmp" || rc=$?
[ $rc = 0 ] || { echo "--- replay log (tail)"; tail -20 "$tmp/replay.log"; }
exit $rc
