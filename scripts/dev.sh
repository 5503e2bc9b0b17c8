#!/usr/bin/env bash
# `make dev`: the plugin end to end on this machine. Starts the mock inabit and a real
# `vault server -dev`, registers the freshly built plugin by sha256 and version, mounts it at
# inabit/, configures it against the mock, reads a token, and keeps both running until Ctrl-C.
#
# Settings (environment): VAULT_PORT (8200), MOCK_PORT (8300), PLUGIN_VERSION (v0.2.0),
# DEV_EXIT_AFTER_SETUP=1 to stop once the first token was read (used by scripts and CI).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
VAULT_PORT=${VAULT_PORT:-8200}
MOCK_PORT=${MOCK_PORT:-8300}
PLUGIN_VERSION=${PLUGIN_VERSION:-v0.2.0}
VAULT_BIN=${VAULT_BIN:-$root/.tools/vault-v1.21.0/vault}
plugin_bin=$root/bin/vault-plugin-secrets-inabit
work=$root/.dev

say() { printf '\033[1mdev:\033[0m %s\n' "$*"; }
die() { printf 'dev: %s\n' "$*" >&2; exit 1; }

[ -x "$plugin_bin" ] || die "no plugin binary at $plugin_bin: run 'make dev', which builds it"
[ -x "$VAULT_BIN" ] || die "no vault binary at $VAULT_BIN: run 'make dev', which builds it"

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port_taken "$VAULT_PORT" && die "port $VAULT_PORT is taken (another Vault?). Stop it, or run: VAULT_PORT=8210 make dev"
port_taken "$MOCK_PORT" && die "port $MOCK_PORT is taken. Stop whatever listens there, or run: MOCK_PORT=8310 make dev"

rm -rf "$work"
mkdir -p "$work/plugins"
cp "$plugin_bin" "$work/plugins/"
(cd "$root" && go build -o "$work/mock-inabit" ./internal/cmd/mock-inabit)

pids=()
cleanup() {
  trap - EXIT INT TERM
  say "stopping Vault and the mock"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

"$work/mock-inabit" -addr "127.0.0.1:$MOCK_PORT" -login-token-file "$work/login-token" >"$work/mock.log" 2>&1 &
pids+=($!)

cat >"$work/vault.hcl" <<HCL
plugin_directory = "$work/plugins"
HCL
"$VAULT_BIN" server -dev -dev-root-token-id=root -dev-listen-address="127.0.0.1:$VAULT_PORT" \
  -config="$work/vault.hcl" >"$work/vault.log" 2>&1 &
pids+=($!)

export VAULT_ADDR="http://127.0.0.1:$VAULT_PORT" VAULT_TOKEN=root
for _ in $(seq 1 100); do
  "$VAULT_BIN" status >/dev/null 2>&1 && [ -s "$work/login-token" ] && break
  sleep 0.2
done
"$VAULT_BIN" status >/dev/null 2>&1 || { tail -20 "$work/vault.log" >&2; die "Vault did not start; log above and in $work/vault.log"; }
[ -s "$work/login-token" ] || { cat "$work/mock.log" >&2; die "the mock did not start; log in $work/mock.log"; }

sha=$(sha256sum "$work/plugins/vault-plugin-secrets-inabit" | cut -d' ' -f1)
say "registering the plugin (sha256 $sha, version $PLUGIN_VERSION)"
"$VAULT_BIN" plugin register -sha256="$sha" -command=vault-plugin-secrets-inabit -version="$PLUGIN_VERSION" secret inabit
"$VAULT_BIN" secrets enable -path=inabit -plugin-version="$PLUGIN_VERSION" inabit
"$VAULT_BIN" secrets tune -max-lease-ttl=15m inabit/
"$VAULT_BIN" write inabit/config url="http://127.0.0.1:$MOCK_PORT/graphql" login_token=@"$work/login-token"
say "first access token from the mock inabit:"
"$VAULT_BIN" read inabit/token

cat <<MSG

$(say "Vault is at $VAULT_ADDR (root token: root); the mock inabit at http://127.0.0.1:$MOCK_PORT/graphql")
Try, in another shell:
  export VAULT_ADDR=$VAULT_ADDR VAULT_TOKEN=root PATH=$(dirname "$VAULT_BIN"):\$PATH
  vault read inabit/token            # a leased access token (cached, one upstream call per lifetime)
  vault write -f inabit/rotate-root  # rotate the login token now
  vault read inabit/config           # settings and rotation status, never the token
Logs: $work/vault.log and $work/mock.log. Ctrl-C stops both.
MSG

if [ "${DEV_EXIT_AFTER_SETUP:-}" = 1 ]; then
  "$VAULT_BIN" write -f inabit/rotate-root
  "$VAULT_BIN" read -field=last_rotation_error inabit/config
  exit 0
fi
wait
