package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// The Vault Secrets Operator's rule for a VaultDynamicSecret with allowStaticCreds: true, ported
// from github.com/hashicorp/vault-secrets-operator v1.4.1, commit
// 9b840a5a0c3455278d580418d6336f2011cf8574, controllers/vaultdynamicsecret_controller.go (the
// root package's path_static_token_vso_test.go holds the same port, against the backend on a
// virtual clock):
//   - vaultStaticCredsMetaDataFromData, L1044-1092: last_vault_rotation parsed as RFC 3339 to
//     Unix seconds, rotation_period and ttl as json.Number (the Vault API client's decoding);
//   - isStaticCreds, L441-445: last_vault_rotation > 0 and rotation_period >= 1;
//   - computePostSyncHorizon, L878-905, with getRotationDuration, L913-914: the next sync is
//     ttl + 0.5 s + jitter after this one, the jitter uniform in [0, 150 ms)
//     (computeMaxJitterWithPercent(3 s, 0.05): L47-51 and controllers/common.go L67-77); not
//     static creds: horizon 0, and VSO never requeues (L420-424);
//   - awaitVaultSecretRotation, L562-697: an answer is taken at once only if its
//     last_vault_rotation, to the second, differs from the last sync's (L585-591); otherwise VSO
//     reads again at once and keeps polling, for up to 10 s, while ttl <= 2 (L610-644).

type vsoStaticCreds struct {
	LastVaultRotation int64
	RotationPeriod    int64
	TTL               int64
}

func vsoStaticCredsFromData(data map[string]interface{}) (vsoStaticCreds, error) {
	var ret vsoStaticCreds
	if v, ok := data["last_vault_rotation"]; ok && v != nil {
		s, _ := v.(string)
		ts, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return ret, fmt.Errorf("invalid last_vault_rotation %w", err)
		}
		ret.LastVaultRotation = ts.Unix()
	}
	for key, dst := range map[string]*int64{"rotation_period": &ret.RotationPeriod, "ttl": &ret.TTL} {
		if v, ok := data[key]; ok && v != nil {
			n, ok := v.(json.Number)
			if !ok {
				return ret, errors.New("invalid " + key)
			}
			i, err := n.Int64()
			if err != nil {
				return ret, err
			}
			*dst = i
		}
	}
	return ret, nil
}

func (m vsoStaticCreds) isStaticCreds() bool {
	return m.LastVaultRotation > 0 && m.RotationPeriod >= 1
}

func (m vsoStaticCreds) postSyncHorizon(jitter time.Duration) time.Duration {
	if !m.isStaticCreds() {
		return 0
	}
	if d := time.Duration(m.TTL) * time.Second; d > 0 {
		return d + 500*time.Millisecond + jitter // RotationPeriod > 0 here
	}
	return time.Second + jitter
}

// vsoFollower is one VaultDynamicSecret on path: what VSO keeps in its status, and the token the
// Kubernetes Secret holds.
type vsoFollower struct {
	path     string
	mock     *mockctl.Mock
	wantLeft time.Duration // the least life the held token may have when it is replaced
	want     int           // the fewest syncs in the run

	next    time.Time
	jitter  time.Duration // the jitter in next
	last    vsoStaticCreds
	held    string
	heldExp time.Time
	syncs   int
}

func (f *vsoFollower) sync(t *testing.T, c *api.Client, start time.Time, jitter time.Duration) {
	t.Helper()
	rel := func(x time.Time) string {
		if d := x.Sub(start).Round(10 * time.Millisecond); d < 0 {
			return d.String()
		} else {
			return "+" + d.String()
		}
	}
	at := time.Now()
	var left time.Duration
	if f.syncs > 0 {
		left = f.heldExp.Sub(at)
		if !f.mock.AccessTokenValid(f.held) {
			t.Fatalf("%s sync %d at %s: the token VSO synced last time is already expired", f.path, f.syncs+1, rel(at))
		}
		if left < f.wantLeft {
			t.Fatalf("%s sync %d at %s: the held token has %s left, want at least %s", f.path, f.syncs+1, rel(at), left, f.wantLeft)
		}
	}
	// VSO's plain GET (doVault, L447-495) through the Vault API client's Logical()
	// (vault/client.go L709-740), which decodes the data as this one does.
	s, err := c.Logical().Read(f.path)
	if err != nil || s == nil {
		t.Fatalf("%s: read: %v %v", f.path, s, err)
	}
	got := time.Now()
	if s.LeaseID != "" || s.Renewable {
		t.Fatalf("%s came with a lease (%q, renewable %v): VSO would renew it instead", f.path, s.LeaseID, s.Renewable)
	}
	meta, err := vsoStaticCredsFromData(s.Data)
	if err != nil {
		t.Fatalf("%s sync %d: VSO cannot parse the data: %v", f.path, f.syncs+1, err)
	}
	horizon := meta.postSyncHorizon(jitter)
	if horizon == 0 {
		t.Fatalf("%s sync %d: VSO: \"Vault response data does not support static-creds semantics\": horizon 0, it never syncs again (%+v)",
			f.path, f.syncs+1, meta)
	}
	tok, _ := s.Data["access_token"].(string)
	if f.syncs > 0 {
		if tok == f.held {
			t.Fatalf("%s sync %d at %s (ttl was %d s, jitter %s): the same token again, now with ttl %d; a re-read at VSO's horizon must get a fresh one",
				f.path, f.syncs+1, rel(at), f.last.TTL, f.jitter.Round(time.Millisecond), meta.TTL)
		}
		if meta.LastVaultRotation == f.last.LastVaultRotation {
			t.Fatalf("%s sync %d: a new token under the last sync's last_vault_rotation (%+v after %+v): VSO would not take it at once but poll",
				f.path, f.syncs+1, meta, f.last)
		}
	}
	var claims jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil || claims.ExpiresAt == nil {
		t.Fatalf("%s: access_token is not a JWT with exp: %v", f.path, err)
	}
	held := ""
	if f.syncs > 0 {
		held = fmt.Sprintf(", replacing a token with %s left", left.Round(100*time.Millisecond))
	}
	f.held, f.heldExp, f.last = tok, claims.ExpiresAt.Time, meta
	f.next, f.jitter = got.Add(horizon), jitter
	f.syncs++
	t.Logf("%-26s sync %d at %-7s ttl=%-3d last_vault_rotation=%-7s expires %-8s next sync %s (jitter %s)%s",
		f.path, f.syncs, rel(at), meta.TTL, rel(time.Unix(meta.LastVaultRotation, 0)), rel(f.heldExp), rel(f.next),
		jitter.Round(time.Millisecond), held)
}

// TestVSOStaticCredsKeepStaticTokenFresh: VSO's rule for a VaultDynamicSecret with
// allowStaticCreds: true, driven over the real Vault HTTP API against inabit/static-token, keeps
// re-syncing for the whole run, and every sync after the first gets a new token under a new
// last_vault_rotation, while the token it held until then is still valid with room to spare. Two
// mounts, one per kind of ttl:
//   - inabit/: 125 s tokens, access_token_min_ttl 2m (the minimum). The cache serves a token for
//     5 s, so VSO re-syncs about every 5.6 s, each time replacing a token with ~118 s left;
//   - inabit-short/: 15 s tokens, never cacheable, ttl is half the life (7 s), so VSO re-syncs
//     about every 7.6 s, replacing a token with ~7 s left; the run covers three lifetimes.
func TestVSOStaticCredsKeepStaticTokenFresh(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mockCached := startMock(t, mockctl.Options{AccessTokenTTL: 125 * time.Second})
	mockShort := startMock(t, mockctl.Options{AccessTokenTTL: 15 * time.Second})
	c := devServer(t, dir, mockCached.URL(), mockCached.LoginToken(), map[string]interface{}{"access_token_min_ttl": "2m"})
	if err := c.Sys().Mount("inabit-short", &api.MountInput{
		Type: pluginName, Config: api.MountConfigInput{MaxLeaseTTL: "15m", PluginVersion: pluginVersion},
	}); err != nil {
		t.Fatalf("mount inabit-short: %v", err)
	}
	if _, err := c.Logical().Write("inabit-short/config", map[string]interface{}{
		"url": mockShort.URL(), "login_token": mockShort.LoginToken(), "access_token_min_ttl": "2m",
	}); err != nil {
		t.Fatalf("inabit-short/config: %v", err)
	}

	followers := []*vsoFollower{
		{path: mountPath + "/static-token", mock: mockCached, wantLeft: 115 * time.Second, want: 7},
		{path: "inabit-short/static-token", mock: mockShort, wantLeft: 5 * time.Second, want: 5},
	}
	upstreamBefore := mockCached.Calls(mockctl.OpAccessToken)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	start := time.Now()
	for _, f := range followers {
		f.next = start
	}
	// 46 s: over three lifetimes of the 15 s tokens, nine 5 s serving periods of the 125 s ones.
	const run = 46 * time.Second
	deadline := start.Add(run)
	for {
		f := followers[0]
		for _, g := range followers[1:] {
			if g.next.Before(f.next) {
				f = g
			}
		}
		if f.next.After(deadline) {
			break
		}
		time.Sleep(time.Until(f.next))
		f.sync(t, c, start, time.Duration(rng.Int63n(int64(150*time.Millisecond))))
	}

	// At the end of the run, each follower's next sync is still to come: the token it holds must
	// still be valid.
	time.Sleep(time.Until(deadline))
	for _, f := range followers {
		if f.syncs < f.want {
			t.Errorf("%s: %d syncs in %s, want at least %d", f.path, f.syncs, run, f.want)
		}
		if !f.mock.AccessTokenValid(f.held) {
			t.Errorf("%s: the token synced last is expired at the end of the run, before VSO's next sync", f.path)
		}
	}
	// The cacheable mount: one upstream call per synced token.
	if calls := mockCached.Calls(mockctl.OpAccessToken) - upstreamBefore; calls > followers[0].syncs {
		t.Errorf("%s: %d upstream calls for %d synced tokens, want at most one per token", followers[0].path, calls, followers[0].syncs)
	}
	for _, m := range []*mockctl.Mock{mockCached, mockShort} {
		assertNoTokensInFiles(t, m, filepath.Join(dir, "server.log"), filepath.Join(dir, "audit.log"))
	}
}
