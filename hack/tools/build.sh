#!/usr/bin/env bash
# Builds the pinned command-line tools that generation and the tests need, once,
# into a cache folder outside the clone keyed by each tool's module version, and
# prints nothing for a tool that is already there. Every tool comes from the Go
# module proxy: its version is pinned in hack/tools/<group>/go.mod.
#
#   hack/tools/build.sh [tool...]     default: all tools
#   hack/tools/build.sh --path TOOL   print the path of TOOL's binary
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/istio-acme-issuer/tools}

# tool -> "group module package"
declare -A spec=(
  [controller-gen]="controller-gen sigs.k8s.io/controller-tools sigs.k8s.io/controller-tools/cmd/controller-gen"
  [kube-apiserver]="kube k8s.io/kubernetes k8s.io/kubernetes/cmd/kube-apiserver"
  [kube-controller-manager]="kube k8s.io/kubernetes k8s.io/kubernetes/cmd/kube-controller-manager"
  [etcd]="kube go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3"
  [pebble]="pebble github.com/letsencrypt/pebble/v2 github.com/letsencrypt/pebble/v2/cmd/pebble"
  [pebble-challtestsrv]="pebble github.com/letsencrypt/pebble/v2 github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv"
  [helm]="helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm"
  [cmctl]="cmctl github.com/cert-manager/cmctl/v2 github.com/cert-manager/cmctl/v2"
  [approver-policy]="approver-policy github.com/cert-manager/approver-policy github.com/cert-manager/approver-policy/cmd"
  [promtool]="promtool github.com/prometheus/prometheus github.com/prometheus/prometheus/cmd/promtool"
  [actionlint]="actionlint github.com/rhysd/actionlint github.com/rhysd/actionlint/cmd/actionlint"
  [staticcheck]="staticcheck honnef.co/go/tools honnef.co/go/tools/cmd/staticcheck"
  [step-ca]="stepca github.com/smallstep/certificates github.com/smallstep/certificates/cmd/step-ca"
  [step-ca-eabkey]="stepca github.com/smallstep/certificates ./eabkey"
)
order=(controller-gen etcd kube-apiserver kube-controller-manager pebble pebble-challtestsrv step-ca step-ca-eabkey cmctl helm approver-policy promtool actionlint staticcheck)

# KUBE_GROUP picks another group's kube-apiserver and kube-controller-manager
# (make test-compat: kube-1.30, kube-1.37, ...).
group_of() {
  local tool=$1 group
  read -r group _ <<<"${spec[$tool]}"
  if [ "$group" = kube ] && [ "$tool" != etcd ] && [ -n "${KUBE_GROUP:-}" ]; then
    [ -f "$here/$KUBE_GROUP/go.mod" ] || { echo "KUBE_GROUP=$KUBE_GROUP: no $here/$KUBE_GROUP/go.mod" >&2; exit 2; }
    group=$KUBE_GROUP
  fi
  echo "$group"
}

tool_path() {
  local tool=$1 group module pkg version
  read -r group module pkg <<<"${spec[$tool]}"
  group=$(group_of "$tool")
  # The version is read from go.mod directly: no network, no module loading.
  version=$(awk -v m="$module" '$1==m && $2 ~ /^v/ {print $2; exit} $1=="require" && $2==m {print $3; exit}' "$here/$group/go.mod")
  [ -n "$version" ] || { echo "no version of $module in $here/$group/go.mod" >&2; exit 1; }
  # A package of this repository is also keyed by its source.
  if [ "${pkg#./}" != "$pkg" ]; then
    version=$version-$(cat "$here/$group/${pkg#./}"/*.go | sha256sum | cut -c1-12)
  fi
  echo "$cache/$tool-$version/$tool"
}

build() {
  local tool=$1 group module pkg out
  read -r group module pkg <<<"${spec[$tool]}"
  group=$(group_of "$tool")
  out=$(tool_path "$tool")
  [ -x "$out" ] && return 0
  echo "building $tool into $out" >&2
  mkdir -p "$(dirname "$out")"
  local ldflags=""
  if [ "$tool" = kube-apiserver ] || [ "$tool" = kube-controller-manager ]; then
    # Clients read the server's version; a plain go build reports v0.0.0.
    local v=${out%/*}; v=${v##*-v}
    ldflags="-X k8s.io/component-base/version.gitVersion=v$v -X k8s.io/component-base/version.gitMajor=${v%%.*} -X k8s.io/component-base/version.gitMinor=$(echo "$v" | cut -d. -f2)"
  fi
  # step-ca's YubiKey support needs libpcsclite through cgo; without cgo
  # it builds without it, which a CA on files does not use.
  local cgo=${CGO_ENABLED:-}
  [ "$group" = stepca ] && cgo=0
  (cd "$here/$group" && CGO_ENABLED=$cgo go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
}

if [ "${1:-}" = "--path" ]; then
  [ -n "${spec[${2:-}]:-}" ] || { echo "unknown tool: ${2:-}" >&2; exit 2; }
  tool_path "$2"
  exit 0
fi

tools=("$@")
[ ${#tools[@]} -gt 0 ] || tools=("${order[@]}")
for t in "${tools[@]}"; do
  [ -n "${spec[$t]:-}" ] || { echo "unknown tool: $t (known: ${order[*]})" >&2; exit 2; }
  build "$t"
done
