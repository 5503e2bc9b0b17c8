#!/usr/bin/env bash
# Fails when git tracks a build output: a file over 1 MiB, or a compiled binary (ELF, Mach-O, PE).
# A 36 MB plugin binary was once committed at the root; this keeps it from happening again.
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
done < <(git ls-files -z)
exit $bad
