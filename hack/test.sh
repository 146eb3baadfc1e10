#!/usr/bin/env bash
# The project's tests: unit and integration tests of the main module (the
# integration tests run a real kube-apiserver, etcd and Pebble), then the
# end-to-end tests in e2e/ (cert-manager's controllers, our controller,
# Pebble, cmctl and Istio's own route simulation). 'make test' runs this.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

hack/tools/build.sh

echo "==> unit and integration tests"
go test -count=1 -timeout 20m ./...

echo "==> route planner against Istio's own translation (500 generated layouts, fixed seed)"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! (cd e2e && go test -count=1 -timeout 20m -v ./differential -run TestDifferential) >"$log" 2>&1; then
  tail -n 300 "$log"
  exit 1
fi
grep -o -E "differential (summary|dimensions).*" "$log"

echo "==> end-to-end tests"
(cd e2e && go test -count=1 -timeout 30m -v .)
