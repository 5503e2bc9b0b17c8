package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// renderWatch follows one Agent template's output file.
type renderWatch struct {
	name string
	mock *mockctl.Mock
	file string
	// minLeft is the least life a rendered token may have left whenever the file is read: Agent
	// must replace it at ttl+1, long before it expires, not at the 5-minute default.
	minLeft time.Duration
	// wantTokens is the fewest distinct tokens the file must hold during the run.
	wantTokens int

	tokens []string
	first  map[string]time.Time
	exp    map[string]time.Time
}

func (w *renderWatch) poll(t *testing.T, diag func() string) {
	t.Helper()
	raw, err := os.ReadFile(w.file)
	if err != nil || len(raw) == 0 {
		return // consul-template renders by rename: the file is absent or whole
	}
	tok := strings.TrimSpace(string(raw))
	now := time.Now()
	if !w.mock.AccessTokenValid(tok) {
		t.Fatalf("%s: the rendered token is expired or invalid (after %d renders); agent log:\n%s", w.name, len(w.tokens), diag())
	}
	if _, ok := w.first[tok]; !ok {
		var claims jwt.RegisteredClaims
		if _, _, err := jwt.NewParser().ParseUnverified(tok, &claims); err != nil || claims.ExpiresAt == nil {
			t.Fatalf("%s: the rendered file does not hold a JWT with exp: %v", w.name, err)
		}
		w.tokens = append(w.tokens, tok)
		w.first[tok] = now
		w.exp[tok] = claims.ExpiresAt.Time
	}
	if left := w.exp[tok].Sub(now); left < w.minLeft {
		t.Fatalf("%s: the rendered token has %s left, want at least %s: Agent did not re-render at ttl+1; agent log:\n%s",
			w.name, left.Round(time.Second), w.minLeft, diag())
	}
}

// TestVaultAgentRendersStaticToken: a real `vault agent` renders inabit/static-token, which has no
// lease, and must re-render it at ttl+1 over several token lifetimes, so the file always holds a
// live token with plenty of life left. Two mounts, one per branch of ttl:
//   - inabit/: 150 s tokens, access_token_min_ttl 2m (the minimum). The cache serves a token for
//     30 s, so ttl = 30 (rounded up) and Agent re-renders every ~31 s, replacing a token with
//     ~118 s left.
//   - inabit-short/: 90 s tokens, min 2m: never cacheable, ttl is half the life (44 s), so Agent
//     re-renders every ~45 s, replacing a token with ~45 s left.
func TestVaultAgentRendersStaticToken(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mockLong := startMock(t, mockctl.Options{AccessTokenTTL: 150 * time.Second})
	mockShort := startMock(t, mockctl.Options{AccessTokenTTL: 90 * time.Second})

	c := devServer(t, dir, mockLong.URL(), mockLong.LoginToken(), map[string]interface{}{"access_token_min_ttl": "2m"})
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

	// Over the real HTTP API first: no lease, and integers where Agent expects them.
	s, err := c.Logical().Read(mountPath + "/static-token")
	if err != nil || s == nil {
		t.Fatalf("static-token read: %v %v", s, err)
	}
	if s.LeaseID != "" || s.LeaseDuration != 0 || s.Renewable {
		t.Fatalf("static-token came with a lease: id=%q duration=%d renewable=%v", s.LeaseID, s.LeaseDuration, s.Renewable)
	}
	for _, k := range []string{"ttl", "rotation_period"} {
		n, ok := s.Data[k].(json.Number)
		if !ok {
			t.Fatalf("%s is %T over the API, want json.Number (consul-template asserts it)", k, s.Data[k])
		}
		if v, err := n.Int64(); err != nil || v < 1 {
			t.Fatalf("%s = %s, want a positive integer", k, n)
		}
	}
	if rp, _ := s.Data["rotation_period"].(json.Number).Int64(); rp != 150 {
		t.Fatalf("rotation_period = %d, want 150", rp)
	}

	tokenFile := filepath.Join(dir, "vault-token")
	if err := os.WriteFile(tokenFile, []byte("root"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := &renderWatch{name: "inabit/static-token", mock: mockLong, file: filepath.Join(dir, "static-long"),
		minLeft: 110 * time.Second, wantTokens: 7, first: map[string]time.Time{}, exp: map[string]time.Time{}}
	short := &renderWatch{name: "inabit-short/static-token", mock: mockShort, file: filepath.Join(dir, "static-short"),
		minLeft: 35 * time.Second, wantTokens: 5, first: map[string]time.Time{}, exp: map[string]time.Time{}}
	agentHCL := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(agentHCL, []byte(fmt.Sprintf(`
vault { address = %q }
auto_auth {
  method "token_file" {
    config = { token_file_path = %q }
  }
}
template {
  contents    = "{{ with secret \"inabit/static-token\" }}{{ .Data.access_token }}{{ end }}"
  destination = %q
}
template {
  contents    = "{{ with secret \"inabit-short/static-token\" }}{{ .Data.access_token }}{{ end }}"
  destination = %q
}
`, c.Address(), tokenFile, long.file, short.file)), 0o600); err != nil {
		t.Fatal(err)
	}
	agentLogPath := filepath.Join(dir, "agent.log")
	startProcess(t, agentLogPath, vaultBinary(t), "agent", "-config="+agentHCL, "-log-level=debug")
	agentLog := func() string {
		raw, _ := os.ReadFile(agentLogPath)
		return string(raw)
	}
	eventually(t, 30*time.Second, "agent's first renders", func() bool {
		a, errA := os.ReadFile(long.file)
		b, errB := os.ReadFile(short.file)
		return errA == nil && errB == nil && len(a) > 0 && len(b) > 0
	}, agentLog)

	// 240 s: 1.6 lifetimes of the 150 s tokens and 2.7 of the 90 s ones, so a template that
	// was not re-rendered in time would be caught holding an expired token.
	upstreamBefore := mockLong.Calls(mockctl.OpAccessToken)
	deadline := time.Now().Add(240 * time.Second)
	for time.Now().Before(deadline) {
		long.poll(t, agentLog)
		short.poll(t, agentLog)
		time.Sleep(250 * time.Millisecond)
	}

	for _, w := range []*renderWatch{long, short} {
		if len(w.tokens) < w.wantTokens {
			t.Errorf("%s: Agent rendered %d distinct tokens in 240 s, want at least %d; agent log:\n%s", w.name, len(w.tokens), w.wantTokens, agentLog())
		}
		for i := 1; i < len(w.tokens); i++ {
			prev, next := w.tokens[i-1], w.tokens[i]
			t.Logf("%s: render %d after %s, replacing a token with %s left",
				w.name, i+1, w.first[next].Sub(w.first[prev]).Round(100*time.Millisecond), w.exp[prev].Sub(w.first[next]).Round(time.Second))
		}
	}
	// The cacheable mount: one upstream call per token, however often Agent reads.
	if calls := mockLong.Calls(mockctl.OpAccessToken) - upstreamBefore; calls > len(long.tokens) {
		t.Errorf("inabit/: %d upstream calls for %d rendered tokens, want at most one per token", calls, len(long.tokens))
	}
	if log := agentLog(); !strings.Contains(log, "Found rotation_period and set lease duration to") {
		t.Errorf("the agent log never says it used rotation_period/ttl: it re-read on some other schedule")
	}
	// No lease was ever registered for either mount.
	for _, m := range []string{mountPath, "inabit-short"} {
		leases, err := c.Logical().List("sys/leases/lookup/" + m + "/static-token/")
		if err != nil {
			t.Fatalf("listing leases under %s: %v", m, err)
		}
		if leases != nil {
			if keys, _ := leases.Data["keys"].([]interface{}); len(keys) > 0 {
				t.Errorf("%s/static-token registered %d leases, want none", m, len(keys))
			}
		}
	}
	assertNoTokensInFiles(t, mockLong, filepath.Join(dir, "server.log"), filepath.Join(dir, "audit.log"), agentLogPath)
	assertNoTokensInFiles(t, mockShort, filepath.Join(dir, "server.log"), filepath.Join(dir, "audit.log"), agentLogPath)
}
