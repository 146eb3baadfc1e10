#!/usr/bin/env bash
# 'make demo': issues a certificate end to end on an embedded default (local
# kube-apiserver and etcd, Pebble, cert-manager's controllers, our controller
# and an ingress gateway routed by Istio's own simulation), prints
# 'cmctl status certificate' and stops everything it started.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hack/tools/build.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd e2e
go test -tags demo -c -o "$bin/demo.test" .
# Run the test binary itself so its output streams as it happens.
"$bin/demo.test" -test.run '^TestDemo$' -test.timeout 15m
