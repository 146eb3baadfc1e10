#!/usr/bin/env bash
# Builds the e2e test binary with a build tag and runs one test from it, so
# that what the test prints streams as it happens ('make demo', 'make bench').
#
#   hack/run-e2e-test.sh TAG TEST
set -euo pipefail
tag=$1 test=$2
cd "$(dirname "${BASH_SOURCE[0]}")/.."
hack/tools/build.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
cd e2e
go test -tags "$tag" -c -o "$bin/$tag.test" .
"$bin/$tag.test" -test.run "^$test\$" -test.timeout "${TEST_TIMEOUT:-20m}"
