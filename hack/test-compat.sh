#!/usr/bin/env bash
# The compatibility range, tested: on the lowest and highest Kubernetes
# minor the module proxy serves in the supported range, with the lowest and
# highest supported cert-manager, the chart's server-side dry run, its RBAC
# checks and a helm install, and one issuance end to end; then the route
# planner against Istio's translation on LAYOUTS generated layouts, for
# each supported Istio version. Prints each combination's result and time.
# 'make test-compat' runs this; it is not part of 'make test'.
#
#   KUBE_GROUPS="kube-1.30 kube-1.37" CERT_MANAGER_VERSIONS="v1.21.0 v1.21.2" LAYOUTS=3000 hack/test-compat.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

kube_groups=${KUBE_GROUPS:-kube-1.30 kube-1.37}
cert_managers=${CERT_MANAGER_VERSIONS:-v1.21.0 v1.21.2}
layouts=${LAYOUTS:-3000}

hack/tools/build.sh
for g in $kube_groups; do
  KUBE_GROUP=$g hack/tools/build.sh kube-apiserver kube-controller-manager
done

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
results=()
failed=0
run() { # name, then the command
  local name=$1 start rc
  shift
  start=$(date +%s)
  if "$@" >"$log/out" 2>&1; then rc=pass; else rc=FAIL; failed=1; fi
  results+=("$(printf '%-58s %-4s %4ss' "$name" "$rc" $(($(date +%s) - start)))")
  if [ "$rc" = FAIL ]; then tail -n 80 "$log/out"; fi
  echo "${results[-1]}"
}

for g in $kube_groups; do
  apiserver=$(KUBE_GROUP=$g hack/tools/build.sh --path kube-apiserver)
  kube=${apiserver%/*}; kube=${kube##*-v}
  echo "KUBE_GROUP=$g: $("$apiserver" --version)"
  for cm in $cert_managers; do
    export KUBE_GROUP=$g KUBE_VERSION=$kube CERT_MANAGER_VERSION=$cm
    run "Kubernetes $kube, cert-manager $cm: chart, RBAC, install" \
      go test -count=1 -timeout 15m ./charts -run 'TestChartIsAcceptedByTheAPIServer|TestChartRBACIsLeastPrivilege|TestCertManagerMayApproveOurRequests|TestHelmInstall'
    run "Kubernetes $kube, cert-manager $cm: one issuance" \
      bash -c 'cd e2e && go test -count=1 -timeout 15m -run "TestEndToEnd$/a_Certificate_for_two_names" -v . | grep -E "^(=== RUN|--- |\s+e2e_test|ok|FAIL|cert-manager)"'
    unset KUBE_GROUP KUBE_VERSION CERT_MANAGER_VERSION
  done
done

istio=$(cd e2e && go list -m -f '{{.Version}}' istio.io/istio)
run "Istio $istio: route planner on $layouts layouts" \
  bash -c "cd e2e && go test -count=1 -timeout 60m -v ./differential -run TestDifferential -args -layouts=$layouts -seed=11 | grep -o 'differential summary.*'"
grep -o 'differential summary.*' "$log/out" || true

echo
echo "compatibility:"
printf '  %s\n' "${results[@]}"
exit $failed
