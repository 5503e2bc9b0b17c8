#!/usr/bin/env bash
# `make release VERSION=v0.2.0`: the release artifacts, the way HashiCorp ships plugins.
#
#   dist/vault-plugin-secrets-inabit_<version>_<os>_<arch>.zip            one file inside: the binary
#   dist/vault-plugin-secrets-inabit_<version>_<os>_<arch>.sbom.cdx.json  its CycloneDX SBOM: every
#                                                                          module linked in, with version
#                                                                          and hash (cyclonedx-gomod)
#   dist/vault-plugin-secrets-inabit_<version>_SHA256SUMS                 sha256sum lines of all the above
#
# The Go toolchain is go.mod's toolchain line: a release built with any other Go is refused, so
# whoever reproduces it uses the same compiler (with GOTOOLCHAIN=auto, go fetches it).
#
# Builds are reproducible: CGO off, -trimpath, no VCS stamp, an empty build id, pinned
# GOAMD64/GOARM/GOARM64, and zips whose one entry has a fixed name, mode and mtime (the commit
# time, or SOURCE_DATE_EPOCH). Two runs on the same commit with the same Go give the same bytes;
# `make release-check` proves it.
#
# Usage: scripts/release.sh VERSION [OUT_DIR]   (OUT_DIR defaults to dist)
# RELEASE_ALLOW_DIRTY=1 builds from a working tree with uncommitted changes (release-check does).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
name=vault-plugin-secrets-inabit
platforms="linux/amd64 linux/arm64 linux/arm darwin/amd64 darwin/arm64"
# RELEASE_PLATFORMS narrows the build (release-check's quick run builds linux/amd64 only).
platforms=${RELEASE_PLATFORMS:-$platforms}

say() { printf '\033[1mrelease:\033[0m %s\n' "$*"; }
die() { printf 'release: %s\n' "$*" >&2; exit 1; }

VERSION=${1:-${VERSION:-}}
out=${2:-$root/dist}
[ -n "$VERSION" ] || die "no VERSION: run 'make release VERSION=v0.2.0' (a semver tag starting with v)"
semver='^v(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$'
[[ "$VERSION" =~ $semver ]] || die "VERSION=$VERSION is not a semver tag like v0.2.0 or v0.2.0-rc.1"

cd "$root"
# The zip entries' mtime: SOURCE_DATE_EPOCH if set, else the commit time, so it changes only
# with the source.
commit=unknown
if git rev-parse --git-dir >/dev/null 2>&1; then
  commit=$(git rev-parse HEAD)
  if [ -n "$(git status --porcelain --untracked-files=no)" ] && [ "${RELEASE_ALLOW_DIRTY:-}" != 1 ]; then
    die "the working tree has uncommitted changes; a release is built from a commit (RELEASE_ALLOW_DIRTY=1 overrides)"
  fi
  if tagged=$(git rev-parse -q --verify "refs/tags/$VERSION^{commit}") && [ "$tagged" != "$commit" ]; then
    say "warning: tag $VERSION points at ${tagged:0:12}, but HEAD is ${commit:0:12}"
  fi
  mtime=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct HEAD)}
else
  mtime=${SOURCE_DATE_EPOCH:-315532800} # 1980-01-01, the earliest time a zip holds
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
rm -f "$out/${name}_${VERSION}_"*

toolchain=$(awk '$1 == "toolchain" {print $2}' go.mod)
[ -n "$toolchain" ] || die "go.mod has no toolchain line: a release names the Go that builds it"
[ "$(go env GOVERSION)" = "$toolchain" ] ||
  die "go.mod pins $toolchain, but this go is $(go env GOVERSION): use GOTOOLCHAIN=auto (the default) or install $toolchain"

say "$VERSION from commit $commit with $(go env GOVERSION), zip mtime $mtime"
go build -o "$work/zipdeterministic" ./scripts/zipdeterministic

# cyclonedx-gomod, pinned and built with -trimpath by this Go: the SBOM names the tool by its hash,
# so the same tool binary on every machine keeps the SBOM reproducible.
cdx_version=v1.10.0
cdx=$root/.tools/cyclonedx-gomod-$cdx_version-$toolchain/cyclonedx-gomod
if [ ! -x "$cdx" ]; then
  say "installing cyclonedx-gomod $cdx_version (the SBOMs)"
  GOBIN=$(dirname "$cdx") GOFLAGS= CGO_ENABLED=0 go install -trimpath "github.com/CycloneDX/cyclonedx-gomod/cmd/cyclonedx-gomod@$cdx_version"
fi

ldflags="-s -w -buildid= -X github.com/inabit/vault-plugin-secrets-inabit.Version=$VERSION"
zips=()
for p in $platforms; do
  os=${p%/*} arch=${p#*/}
  bin=$work/$os-$arch/$name
  zip=${name}_${VERSION}_${os}_${arch}.zip
  say "building $os/$arch"
  # Fixed values for every knob that changes the code generated, so a developer's environment
  # cannot make the artifacts differ; GOFLAGS cleared for the same reason.
  env CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" GOAMD64=v1 GOARM=6 GOARM64=v8.0 GOFLAGS=-mod=readonly \
    go build -trimpath -buildvcs=false -ldflags "$ldflags" -o "$bin" ./cmd/$name
  "$work/zipdeterministic" -in "$bin" -name "$name" -mtime "$mtime" -mode 0755 -out "$out/$zip"
  zips+=("$zip")
  # The SBOM of exactly this build: the same GOOS/GOARCH/CGO_ENABLED select the same modules.
  # No serial number or timestamp, so two runs give the same bytes; licenses are read from the
  # module cache (a module without a license file is logged, not fatal).
  sbom=${name}_${VERSION}_${os}_${arch}.sbom.cdx.json
  env CGO_ENABLED=0 GOOS="$os" GOARCH="$arch" GOFLAGS=-mod=readonly \
    "$cdx" app -json -noserial -notimestamp -licenses -main "cmd/$name" -output "$out/$sbom" . 2>"$work/sbom.log" ||
    { cat "$work/sbom.log" >&2; die "cyclonedx-gomod failed for $os/$arch"; }
  zips+=("$sbom")
done

sums=${name}_${VERSION}_SHA256SUMS
(cd "$out" && printf '%s\n' "${zips[@]}" | LC_ALL=C sort | xargs sha256sum >"$sums")
say "wrote $out:"
(cd "$out" && for f in $(printf '%s\n' "${zips[@]}" | LC_ALL=C sort) "$sums"; do
  printf '  %10d  %s\n' "$(wc -c <"$f")" "$f"
done)
cat "$out/$sums"
