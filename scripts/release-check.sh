#!/usr/bin/env bash
# `make release-check`: the release is reproducible and stamps its version.
#   1. scripts/release.sh runs twice for VERSION (v0.0.0-check) into two empty directories;
#      every file must be byte-identical (cmp), and both runs must write the same file names.
#   2. The linux/amd64 binary in the zip carries VERSION as the value of inabit.Version (what
#      Vault shows as the plugin's RunningVersion), and its build info says CGO_ENABLED=0 and
#      -trimpath.
# The second run builds with an empty, separate GOCACHE, as a stranger reproducing the release
# would: matching bytes then prove the binaries reproduce, not only the zips (a shared cache would
# hand the second run the first run's compiled packages). RELEASE_CHECK_PLATFORMS chooses the
# platforms: linux/amd64 in `make test`, all five in `make release-check-all`.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
name=vault-plugin-secrets-inabit
VERSION=${VERSION:-v0.0.0-check}

say() { printf '\033[1mrelease-check:\033[0m %s\n' "$*"; }
die() { printf 'release-check: FAIL: %s\n' "$*" >&2; exit 1; }

work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
export RELEASE_ALLOW_DIRTY=1
export RELEASE_PLATFORMS=${RELEASE_CHECK_PLATFORMS:-"linux/amd64 linux/arm64 linux/arm darwin/amd64 darwin/arm64"}
nplatforms=$(wc -w <<<"$RELEASE_PLATFORMS")

head_of() { git -C "$root" rev-parse -q HEAD 2>/dev/null || echo none; }
head_before=$(head_of)
start=$SECONDS
"$root/scripts/release.sh" "$VERSION" "$work/a"
say "first run took $((SECONDS - start))s"
start=$SECONDS
mkdir "$work/gocache"
GOCACHE="$work/gocache" "$root/scripts/release.sh" "$VERSION" "$work/b"
say "second run, with an empty GOCACHE, took $((SECONDS - start))s"
# The zips' mtime is the commit time, so a commit landing between the runs changes them.
[ "$(head_of)" = "$head_before" ] || die "HEAD moved from $head_before to $(head_of) during the check; run it again"

names_a=$(cd "$work/a" && ls)
names_b=$(cd "$work/b" && ls)
[ "$names_a" = "$names_b" ] || die "the runs wrote different files: [$names_a] vs [$names_b]"
[ "$(echo "$names_a" | wc -l)" -eq $((2 * nplatforms + 1)) ] || die "expected $nplatforms zips, $nplatforms SBOMs and a SHA256SUMS, got: $names_a"
for f in $names_a; do
  cmp "$work/a/$f" "$work/b/$f" || die "$f differs between two runs on the same commit"
  printf '  identical  %10d  %s  %s\n' "$(wc -c <"$work/a/$f")" "$(sha256sum "$work/a/$f" | cut -d' ' -f1)" "$f"
done
(cd "$work/a" && sha256sum --quiet -c "${name}_${VERSION}_SHA256SUMS") || die "SHA256SUMS does not match the zips"

# The binary inside the linux/amd64 zip.
zip=$work/a/${name}_${VERSION}_linux_amd64.zip
mkdir "$work/x"
(cd "$work/x" && unzip -q "$zip")
[ "$(cd "$work/x" && ls)" = "$name" ] || die "the zip must hold exactly one file, $name; it holds: $(cd "$work/x" && ls)"
bin=$work/x/$name
[ -x "$bin" ] || die "$name in the zip is not executable"
say "inside $(basename "$zip"): $name, $(wc -c <"$bin") bytes, sha256 $(sha256sum "$bin" | cut -d' ' -f1) (the value for vault plugin register -sha256)"

info=$(go version -m "$bin")
grep -q $'\tbuild\tCGO_ENABLED=0$' <<<"$info" || die "build info lacks CGO_ENABLED=0:"$'\n'"$info"
grep -q $'\tbuild\t-trimpath=true$' <<<"$info" || die "build info lacks -trimpath=true:"$'\n'"$info"
# With -trimpath the build info leaves out -ldflags, so the string can only come from
# inabit.Version having taken the value (the linker ignores an -X for a name it does not know,
# and then the string appears nowhere). Anything that did record the ldflags would show it as
# "Version=<VERSION>", so only occurrences without that prefix count.
total=$( (grep -a -o -F -- "$VERSION" "$bin" || true) | wc -l)
in_flags=$( (grep -a -o -F -- "Version=$VERSION" "$bin" || true) | wc -l)
[ "$total" -gt "$in_flags" ] ||
  die "$VERSION is not in $name: inabit.Version was not set (is the -X path right?)"
say "$name reports $VERSION (inabit.Version, Vault's RunningVersion); CGO_ENABLED=0, -trimpath"

# The SBOM lists exactly the modules linked into the binary, at the versions linked.
sbom=$work/a/${name}_${VERSION}_linux_amd64.sbom.cdx.json
linked=$(awk '$1 == "dep" {print $2 "@" $3}' <<<"$info" | LC_ALL=C sort)
listed=$(cd "$root" && go run ./scripts/sbommodules "$sbom" | LC_ALL=C sort)
[ -n "$linked" ] || die "no dependencies in the build info of $name"
[ "$linked" = "$listed" ] ||
  die "the SBOM does not list the modules linked into $name:"$'\n'"$(diff <(echo "$linked") <(echo "$listed"))"
say "the SBOM lists the $(wc -l <<<"$linked") modules linked into $name, at their linked versions"
say "OK: two runs, the second from an empty build cache, gave byte-identical artifacts for $RELEASE_PLATFORMS"
