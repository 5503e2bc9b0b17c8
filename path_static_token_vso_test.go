package inabit

// Tests of path_static_token.go as the Vault Secrets Operator reads it: a VaultDynamicSecret with
// allowStaticCreds: true re-reads static-token on VSO's own schedule, ported here from VSO's
// source so the plugin is judged by the rule VSO really applies.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// The port below is of github.com/hashicorp/vault-secrets-operator at v1.4.1, commit
// 9b840a5a0c3455278d580418d6336f2011cf8574; "controller" is controllers/vaultdynamicsecret_controller.go.
//
//   - vsoStaticCreds: VaultStaticCredsMetaData, api/v1beta1/vaultdynamicsecret_types.go L116-129.
//   - vsoStaticCredsFromData: vaultStaticCredsMetaDataFromData, controller L1044-1092. It sees the
//     data as the Vault API client decodes it (api.ParseSecret, json.Number for numbers): an
//     int64 straight from the handler would be "invalid rotation_period" there.
//   - vsoIsStaticCreds: isStaticCreds, controller L441-445.
//   - vsoPostSyncHorizon: computePostSyncHorizon with AllowStaticCreds, controller L878-905, and
//     getRotationDuration, L913-914 (d = ttl seconds). The jitter is
//     computeMaxJitterWithPercent(staticCredsJitterHorizon = 3 s, vdsJitterFactor = 0.05)
//     (controller L47-51, controllers/common.go L67-77): uniform in [0, 150 ms). A zero horizon
//     means VSO never requeues (controller L420-424): one sync, then nothing.
//   - awaitVaultSecretRotation (controller L513-514, L562-697) takes an answer at once only if
//     its last_vault_rotation, to the second, differs from the last sync's (L585-591); otherwise
//     it reads again at once and keeps polling, for up to 10 s, while ttl <= 2 (L610-644).

// vsoStaticCreds is VSO's VaultStaticCredsMetaData.
type vsoStaticCreds struct {
	LastVaultRotation int64 // Unix seconds
	RotationPeriod    int64
	RotationSchedule  string
	TTL               int64
}

func vsoStaticCredsFromData(data map[string]any) (vsoStaticCreds, error) {
	var ret vsoStaticCreds
	if v, ok := data["last_vault_rotation"]; ok && v != nil {
		s, _ := v.(string) // VSO asserts v.(string) and would panic on anything else
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return ret, fmt.Errorf("invalid last_vault_rotation %w", err)
		}
		ret.LastVaultRotation = ts.Unix()
	}
	for _, f := range []struct {
		key string
		dst *int64
	}{{"rotation_period", &ret.RotationPeriod}, {"ttl", &ret.TTL}} {
		if v, ok := data[f.key]; ok && v != nil {
			switch t := v.(type) {
			case json.Number:
				n, err := t.Int64()
				if err != nil {
					return ret, err
				}
				*f.dst = n
			case int:
				*f.dst = int64(t)
			default:
				return ret, errors.New("invalid " + f.key)
			}
		}
	}
	if v, ok := data["rotation_schedule"]; ok && v != nil {
		if s, ok := v.(string); ok {
			ret.RotationSchedule = s
		}
	}
	return ret, nil
}

func vsoIsStaticCreds(m vsoStaticCreds) bool {
	return m.LastVaultRotation > 0 && (m.RotationPeriod >= 1 || m.RotationSchedule != "")
}

// vsoMaxJitter is the largest jitter computeMaxJitterWithPercent(3 s, 0.05) returns: it is
// random.Int63() % 150 000 000 ns.
const vsoMaxJitter = 150*time.Millisecond - time.Nanosecond

func vsoPostSyncHorizon(m vsoStaticCreds, jitter time.Duration) time.Duration {
	if !vsoIsStaticCreds(m) {
		return 0 // "Vault response data does not support static-creds semantics"
	}
	d := time.Duration(m.TTL) * time.Second
	var horizon time.Duration
	if d > 0 {
		horizon = d
		if m.RotationPeriod > 0 {
			horizon = d + 500*time.Millisecond
		}
	} else {
		horizon = time.Second
	}
	return horizon + jitter
}

// vsoView is the response data as VSO's Vault client sees it: JSON, numbers as json.Number.
func vsoView(t testing.TB, resp *logical.Response) map[string]any {
	t.Helper()
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]any
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	return data
}

// keysOf lists a response's fields without their values, which hold a token.
func keysOf(data map[string]any) []string {
	keys := make([]string, 0, len(data))
	for k := range data {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// latencyTransport makes every access-token call take latency on the frozen clock: inabit mints
// the token when the call arrives and the answer reaches the plugin latency later, so the plugin
// computes ttl a fraction of a second into the token's life, as on a real network.
type latencyTransport struct {
	clock   *frozenClock
	latency time.Duration
}

func (l latencyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	res, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && bytes.Contains(body, []byte("getApiUserAccessToken")) {
		l.clock.advance(l.latency)
	}
	return res, err
}

// TestStaticTokenKeepsVSOStaticCredsFresh: a VaultDynamicSecret on static-token with
// allowStaticCreds: true, driven by VSO's own rule over four access-token lifetimes, re-syncs
// for ever (the data is static creds to VSO), and at every sync after the first gets a token
// different from the one it holds, from a different last_vault_rotation, so VSO takes it at once
// instead of polling; and the token it held until then still had wantLeft to live. With and
// without the network's latency, with another reader having fetched the token just before VSO's
// first sync, for both kinds of ttl (cached tokens, and tokens too short-lived to cache), at the
// least and the most jitter VSO adds.
func TestStaticTokenKeepsVSOStaticCredsFresh(t *testing.T) {
	cases := []struct {
		name    string
		life    time.Duration
		minTTL  string
		latency time.Duration // of each upstream access-token call, on the virtual clock
		phase   time.Duration // another reader fetched the token this long before VSO's first sync
		// wantLeft is the least life the held token may have when VSO replaces it, and
		// wantSyncs the fewest syncs over four lifetimes.
		wantLeft  time.Duration
		wantSyncs int
	}{
		{"15m tokens, min 10m", 15 * time.Minute, "10m", 0, 0, 10*time.Minute - 2*time.Second, 12},
		{"15m tokens, min 10m, 250ms upstream", 15 * time.Minute, "10m", 250 * time.Millisecond, 0, 10*time.Minute - 3*time.Second, 12},
		{"15m tokens, min 10m, first sync 300ms after another reader's fetch", 15 * time.Minute, "10m", 0, 300 * time.Millisecond, 10*time.Minute - 2*time.Second, 12},
		{"150s tokens, min 2m, 40ms upstream", 150 * time.Second, "2m", 40 * time.Millisecond, 0, 2*time.Minute - 3*time.Second, 19},
		{"90s tokens, min 2m: never cached", 90 * time.Second, "2m", 250 * time.Millisecond, 0, 43 * time.Second, 7},
	}
	for _, tc := range cases {
		for _, jitter := range []time.Duration{0, vsoMaxJitter} {
			t.Run(fmt.Sprintf("%s, jitter %s", tc.name, jitter.Round(time.Millisecond)), func(t *testing.T) {
				env, clock := newFrozenEnv(t, tc.life, tc.minTTL)
				env.b.newAPI = apiOver(latencyTransport{clock: clock, latency: tc.latency})
				start := clock.now()
				if tc.phase > 0 {
					env.readStatic(t)
					clock.advance(tc.phase)
				}

				var last vsoStaticCreds // the VDS status before its first sync
				var held string
				var heldExp time.Time
				syncs := 0
				for end := start.Add(4 * tc.life); clock.now().Before(end); syncs++ {
					at := clock.now()
					if syncs > 0 && !env.mock.AccessTokenValid(held) {
						t.Fatalf("sync %d at +%s: the token VSO synced last time is already expired", syncs+1, at.Sub(start))
					}
					if left := heldExp.Sub(at); syncs > 0 && left < tc.wantLeft {
						t.Fatalf("sync %d at +%s: the held token has %s left, want at least %s", syncs+1, at.Sub(start), left, tc.wantLeft)
					}
					resp := env.readStatic(t)
					meta, err := vsoStaticCredsFromData(vsoView(t, resp))
					if err != nil {
						t.Fatalf("sync %d: VSO cannot parse the data: %v (fields %v)", syncs+1, err, keysOf(resp.Data))
					}
					tok := resp.Data["access_token"].(string)
					if syncs > 0 {
						if tok == held {
							t.Fatalf("sync %d at +%s (ttl was %d s, jitter %s): the same token again, now with ttl %d; a re-read at VSO's horizon must get a fresh one",
								syncs+1, at.Sub(start), last.TTL, jitter, meta.TTL)
						}
						if meta.LastVaultRotation == last.LastVaultRotation {
							t.Fatalf("sync %d: a new token under the last sync's last_vault_rotation (%+v after %+v): VSO would not take it at once but poll",
								syncs+1, meta, last)
						}
					}
					horizon := vsoPostSyncHorizon(meta, jitter)
					if horizon == 0 {
						t.Fatalf("sync %d: VSO: \"Vault response data does not support static-creds semantics\": horizon 0, it never syncs again; %+v from fields %v",
							syncs+1, meta, keysOf(resp.Data))
					}
					claims, err := parseClaims(tok)
					if err != nil {
						t.Fatal(err)
					}
					held, heldExp, last = tok, claims.ExpiresAt, meta
					ms := func(x time.Time) time.Duration { return x.Sub(start).Round(time.Millisecond) }
					t.Logf("sync %2d at +%-10s ttl=%-4d last_vault_rotation=+%-7s token expires +%-8s next sync +%s",
						syncs+1, ms(at), meta.TTL, ms(time.Unix(meta.LastVaultRotation, 0)), ms(heldExp), ms(clock.now().Add(horizon)))
					clock.advance(horizon)
				}
				if syncs < tc.wantSyncs {
					t.Fatalf("%d syncs over four %s lifetimes, want at least %d", syncs, tc.life, tc.wantSyncs)
				}
			})
		}
	}
}

// The fields VSO keys on: last_vault_rotation is when the served token was fetched (RFC 3339 UTC,
// the clock expires_at is counted on), so last_vault_rotation + rotation_period = expires_at; it
// stays put while the cache serves that token and moves when a new token is fetched.
func TestStaticTokenLastVaultRotationIsWhenTheTokenWasFetched(t *testing.T) {
	env, clock := newFrozenEnv(t, 15*time.Minute, "10m")
	fetched := clock.now()
	resp := env.readStatic(t)
	rot := parseTimeField(t, "last_vault_rotation", resp.Data["last_vault_rotation"])
	if !rot.Equal(fetched) || resp.Data["last_vault_rotation"] != fetched.UTC().Format(time.RFC3339) {
		t.Fatalf("last_vault_rotation = %v, want %s", resp.Data["last_vault_rotation"], fetched.UTC().Format(time.RFC3339))
	}
	exp := parseTimeField(t, "expires_at", resp.Data["expires_at"])
	if got := rot.Add(time.Duration(resp.Data["rotation_period"].(int64)) * time.Second); !got.Equal(exp) {
		t.Fatalf("last_vault_rotation + rotation_period = %s, expires_at = %s", got, exp)
	}

	clock.advance(4 * time.Minute)
	if again := env.readStatic(t); again.Data["last_vault_rotation"] != resp.Data["last_vault_rotation"] {
		t.Fatalf("the same cached token under a new last_vault_rotation: %v, was %v", again.Data["last_vault_rotation"], resp.Data["last_vault_rotation"])
	}
	clock.advance(time.Minute + time.Second)
	fresh := env.readStatic(t)
	if fresh.Data["access_token"] == resp.Data["access_token"] {
		t.Fatal("test setup: no new token after the cache let the old one go")
	}
	if got, want := fresh.Data["last_vault_rotation"], clock.now().UTC().Format(time.RFC3339); got != want {
		t.Fatalf("a new token: last_vault_rotation = %v, want %s", got, want)
	}
}
