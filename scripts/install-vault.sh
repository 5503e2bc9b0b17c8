#!/usr/bin/env bash
# Builds the real `vault` binary (server, CLI, agent) from the Vault Go module pinned in
# e2e/go.mod, once per machine and version, into .tools/vault-$VAULT_VERSION/vault.
# Vault publishes no prebuilt binary we can fetch here, so it is compiled from the Go module
# proxy: ~4 GB of modules and ~30 minutes on 2 cores when cold, seconds when cached.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
version=${VAULT_VERSION:-v1.21.0}
out="$root/.tools/vault-$version/vault"

pinned=$(cd "$root/e2e" && go list -m -f '{{.Version}}' github.com/hashicorp/vault 2>/dev/null || true)
if [ -n "$pinned" ] && [ "$pinned" != "$version" ]; then
  echo "install-vault: e2e/go.mod pins Vault $pinned but VAULT_VERSION=$version; change both together" >&2
  exit 1
fi

if [ -x "$out" ] && "$out" version 2>/dev/null | grep -q "Vault ${version}"; then
  echo "install-vault: using cached $("$out" version) at $out"
  exit 0
fi

mkdir -p "$(dirname "$out")"
echo "install-vault: building Vault $version from the Go module proxy into $out"
echo "install-vault: a cold build downloads ~4 GB and takes ~30 minutes on 2 cores (28 measured); progress follows every minute"
start=$(date +%s)
(
  while sleep 60; do
    echo "install-vault: still building ($(( ($(date +%s) - start) / 60 )) min elapsed; module cache $(du -sh "$(go env GOMODCACHE)" 2>/dev/null | cut -f1))"
  done
) &
heartbeat=$!
trap 'kill $heartbeat 2>/dev/null || true' EXIT

# -mod=mod: Vault's module graph names test-only imports that never resolve, so `go mod tidy`
# cannot be used and the build must be allowed to fill go.sum for what it really compiles.
# No -trimpath or -ldflags: the e2e tests compile the same Vault packages in-process, so keeping
# the flags identical lets both builds share Go's build cache.
(cd "$root/e2e" && GOFLAGS=-mod=mod go build -o "$out.tmp" ./cmd/vault)
mv "$out.tmp" "$out"
echo "install-vault: built $("$out" version) in $(( ($(date +%s) - start) / 60 )) min"
