#!/usr/bin/env bash
# 'make bench': time from Certificate creation to Ready, for one Certificate
# at a time and for 20 at once, and the controller's peak memory, on the
# end-to-end stack (real API server, cert-manager, Pebble, Istio's routing).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hack/tools/build.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd e2e
go test -tags bench -c -o "$bin/bench.test" .
"$bin/bench.test" -test.run '^TestBench$' -test.timeout 20m
