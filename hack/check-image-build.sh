#!/usr/bin/env bash
# Builds the controller image's binary without a Docker engine, from exactly
# what the Dockerfile's build stage copies out of the build context (the
# repository's files minus .dockerignore), for every platform the image is
# built for, so that a package the Dockerfile does not copy fails here, not
# at release time.
#
#   hack/check-image-build.sh [DOCKERFILE]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dockerfile=${1:-Dockerfile}
platforms=(linux/amd64 linux/arm64)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
ctx=$work/context src=$work/src
mkdir -p "$ctx" "$src"

# The build context: the files git knows (tracked, or new and not ignored),
# minus .dockerignore's entries (paths relative to the root; a directory
# entry covers everything below it; shell globs as Docker's matcher reads
# them for single path segments).
mapfile -t ignore < <(sed -e 's/#.*//' -e 's/[[:space:]]*$//' -e '/^$/d' -e 's|^/||' -e 's|/$||' .dockerignore 2>/dev/null || true)
while IFS= read -r f; do
  [ -e "$f" ] || continue
  skip=
  for p in "${ignore[@]}"; do
    # shellcheck disable=SC2053 # p is a pattern on purpose
    if [[ $f == $p || $f == $p/* ]]; then skip=1; break; fi
  done
  [ -n "$skip" ] && continue
  mkdir -p "$ctx/$(dirname "$f")"
  cp -p "$f" "$ctx/$f"
done < <(git ls-files --cached --others --exclude-standard)

# The build stage's COPY instructions (those that do not copy from another
# stage), into its WORKDIR.
copies=0
while read -r line; do
  read -ra words <<<"$line"
  args=()
  for w in "${words[@]:1}"; do
    [[ $w == --* ]] || args+=("$w")
  done
  n=${#args[@]}
  [ "$n" -ge 2 ] || { echo "$dockerfile: cannot read '$line'" >&2; exit 1; }
  dest=${args[$((n - 1))]}
  # Docker's COPY: a directory's contents go into the destination; a file
  # goes into it when it ends in / (or is .), else becomes it.
  for s in "${args[@]:0:$((n - 1))}"; do
    s=${s%/}
    [ -e "$ctx/$s" ] || { echo "$dockerfile copies $s, which is not in the build context" >&2; exit 1; }
    if [ -d "$ctx/$s" ]; then
      mkdir -p "$src/$dest"
      cp -a "$ctx/$s/." "$src/$dest"
    elif [[ $dest == */ || $dest == . ]]; then
      mkdir -p "$src/$dest"
      cp -a "$ctx/$s" "$src/$dest"
    else
      mkdir -p "$(dirname "$src/$dest")"
      cp -a "$ctx/$s" "$src/$dest"
    fi
  done
  copies=$((copies + 1))
done < <(awk '/^FROM /{stage++} stage==1 && /^COPY / && !/--from=/' "$dockerfile")
[ "$copies" -gt 0 ] || { echo "$dockerfile: no COPY in its first stage" >&2; exit 1; }

for platform in "${platforms[@]}"; do
  os=${platform%/*} arch=${platform#*/}
  if ! (cd "$src" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch GOFLAGS=-mod=readonly go build -trimpath -o "$work/istio-acme-issuer-$os-$arch" ./cmd/istio-acme-issuer); then
    echo "the image's binary does not build for $platform from what $dockerfile copies: add what is missing to the build context (COPY), or remove it from .dockerignore" >&2
    exit 1
  fi
done
echo "image binary builds from $dockerfile's build context for ${platforms[*]}"
