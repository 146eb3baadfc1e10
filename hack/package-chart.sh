#!/usr/bin/env bash
# Packages the chart for a release: chart version VERSION without its "v",
# appVersion VERSION, and the image pinned to DIGEST, so the packaged chart
# runs exactly the image the release pushed. Writes the .tgz into OUT_DIR
# and prints its path. The release workflow and the chart tests run it.
#
#   hack/package-chart.sh VERSION DIGEST OUT_DIR
set -euo pipefail
version=$1 digest=$2 out=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
[[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] || { echo "VERSION must be vX.Y.Z, not $version" >&2; exit 2; }
[[ $digest =~ ^sha256:[a-f0-9]{64}$ ]] || { echo "DIGEST must be sha256:<64 hex digits>, not $digest" >&2; exit 2; }
helm=${HELM:-$("$here/hack/tools/build.sh" --path helm)}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a "$here/charts/istio-acme-issuer" "$work/"
values=$work/istio-acme-issuer/values.yaml
sed -i "s|^  digest: \"\"$|  digest: \"$digest\"|" "$values"
grep -q "^  digest: \"$digest\"$" "$values" || { echo "values.yaml has no image.digest line to pin" >&2; exit 1; }
mkdir -p "$out"
"$helm" package "$work/istio-acme-issuer" --version "${version#v}" --app-version "$version" --destination "$out" >/dev/null
echo "$out/istio-acme-issuer-${version#v}.tgz"
