#!/usr/bin/env bash
# Fails when git tracks a build output: a file over 1 MiB, or a compiled binary (ELF, Mach-O, PE).
# A 36 MB plugin binary was once committed at the root; this keeps it from happening again.
# Also fails when git tracks a symlink: module zips drop them and Windows checkouts break them
# (e2e once reached the mock through one; it now runs the mock as a process).
# Also fails when the plugin's module could not be installed with `go install …@version`
# (a replace directive) or when the plugin binary would link the mock's GraphQL server.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  if [ "$size" -gt 1048576 ]; then
    echo "check-tree: $f is $size bytes; tracked files stay under 1 MiB (build outputs do not belong in git)" >&2
    bad=1
  fi
  magic=$(head -c 4 "$f" | od -An -tx1 | tr -d ' \n')
  case "$magic" in
    7f454c46|cffaedfe|cefaedfe|feedfacf|feedface|cafebabe|4d5a*)
      echo "check-tree: $f is a compiled binary; build it, do not commit it" >&2
      bad=1 ;;
  esac
done < <(git ls-files -z || echo "check-tree: git ls-files failed" >&2)
git rev-parse --git-dir >/dev/null || exit 1
if links=$(git ls-files -s | awk '$1 == "120000" { print $4 }') && [ -n "$links" ]; then
  echo "check-tree: git tracks symlinks (module zips drop them, Windows checkouts break them):" >&2
  echo "$links" >&2
  bad=1
fi
# go install <module>@version refuses a main module whose go.mod has replace or exclude.
if grep -qE '^[[:space:]]*(replace|exclude)([[:space:]]|\()' go.mod; then
  echo "check-tree: go.mod has a replace or exclude directive; 'go install <module>/cmd/...@version' refuses such a module" >&2
  bad=1
fi
# The plugin links a GraphQL client (machinebox/graphql) and never a GraphQL server or the mock,
# on every platform release.sh ships. A failing go list fails the check.
platforms=$(sed -n 's/^platforms="\(.*\)"$/\1/p' scripts/release.sh)
[ -n "$platforms" ] || { echo "check-tree: no platforms= line in scripts/release.sh" >&2; exit 1; }
for platform in $platforms; do
  if ! deps=$(GOOS=${platform%/*} GOARCH=${platform#*/} GOFLAGS=-mod=readonly GOWORK=off go list -deps ./cmd/vault-plugin-secrets-inabit); then
    echo "check-tree: go list -deps failed for $platform" >&2
    bad=1
    continue
  fi
  if linked=$(grep -E 'graph-gophers|mockinabit|graphql-go' <<<"$deps"); then
    echo "check-tree: on $platform the plugin binary would link test-only packages:" >&2
    echo "$linked" >&2
    bad=1
  fi
done
exit $bad
