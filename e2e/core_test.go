package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

func TestMountReportsRunningVersion(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	mounts, err := e.client().Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	m, ok := mounts[mountPath+"/"]
	if !ok {
		t.Fatalf("mount missing: %v", mounts)
	}
	if m.RunningVersion != pluginVersion || m.RunningSha256 != pluginSHA {
		t.Fatalf("running version %q sha %q, want %q %q", m.RunningVersion, m.RunningSha256, pluginVersion, pluginSHA)
	}
}

func TestConfigOverAPI(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	raw, err := e.client().Logical().ReadRaw(mountPath + "/config")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(raw.Body)
	raw.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(body), e.mock.LoginToken()) || strings.Contains(string(body), `"login_token"`) {
		t.Fatalf("config read carries the login token: %s", body)
	}
	cfg := e.readConfig()
	if cfg["url"] != e.mockURL || cfg["last_rotation_error"] != "" || cfg["login_token_expires_at"] == "" {
		t.Fatalf("config read = %v", cfg)
	}
}

// A url-only write to another host would hand the stored token to it: refused with a 400, and the
// other host never sees a request.
func TestURLMoveNeedsLoginTokenOverAPI(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	other := startMock(t, mockctl.Options{})

	_, err := e.client().Logical().Write(mountPath+"/config", map[string]interface{}{"url": other.URL() + "/graphql"})
	if statusOf(err) != 400 || !strings.Contains(apiMessage(err), "login_token in the same request") {
		t.Fatalf("url-only move to another host: %v", err)
	}
	e.readToken(e.client())
	if got := other.Calls(mockctl.OpAccessToken) + other.Calls(mockctl.OpRefresh); got != 0 {
		t.Fatalf("the other host saw %d requests", got)
	}
	if e.readConfig()["url"] != e.mockURL {
		t.Fatal("the refused write changed the url")
	}
}

func TestBadInputOverAPI(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	before := e.readConfig()
	now := time.Now()
	sign := func(c jwt.MapClaims) string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString([]byte("k"))
		return s
	}
	cases := []struct {
		path  string
		data  map[string]interface{}
		field string
	}{
		{"config", map[string]interface{}{"login_token": ""}, "login_token"},
		{"config", map[string]interface{}{"login_token": "not-a-jwt"}, "login_token"},
		{"config", map[string]interface{}{"login_token": "a.b"}, "login_token"},
		{"config", map[string]interface{}{"login_token": sign(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()})}, "login_token"},
		{"config", map[string]interface{}{"login_token": sign(jwt.MapClaims{"exp": now.Add(50 * 365 * 24 * time.Hour).Unix()})}, "login_token"},
		{"config", map[string]interface{}{"login_token": sign(jwt.MapClaims{"iat": now.Add(time.Hour).Unix(), "exp": now.Add(48 * time.Hour).Unix()})}, "login_token"},
		{"config", map[string]interface{}{"login_token": sign(jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(30 * 24 * time.Hour).Unix()})}, "login_token"},
		{"config", map[string]interface{}{"login_token": "Bearer " + e.mock.LoginToken()}, "login_token"},
		{"config", map[string]interface{}{"login_token": "ey\u0007J.x.y"}, "login_token"},
		{"config", map[string]interface{}{"login_token": strings.Repeat("x", 1<<20-1)}, "login_token"},
		{"config", map[string]interface{}{"login_token": 12345}, "login_token"},
		{"config", map[string]interface{}{"url": "http://example.com/graphql"}, "url"},
		{"config", map[string]interface{}{"url": "https://u:p@example.com/graphql"}, "url"},
		{"config", map[string]interface{}{"url": "https://example.com/graphql#frag"}, "url"},
		{"config", map[string]interface{}{"url": "gopher://127.0.0.1/"}, "url"},
		{"config", map[string]interface{}{"url": "not a url"}, "url"},
		// Vault itself answers 500 for JSON strings over 1 MiB before the plugin sees them.
		{"config", map[string]interface{}{"url": "https://example.com/" + strings.Repeat("a", 512<<10)}, "url"},
		{"config", map[string]interface{}{"rotation_period": "-5m"}, "rotation_period"},
		{"config", map[string]interface{}{"rotation_period": "10s"}, "rotation_period"},
		{"config", map[string]interface{}{"rotation_period": "720h"}, "rotation_period"},
		{"config", map[string]interface{}{"rotation_period": "999999999h"}, "rotation_period"},
		{"config", map[string]interface{}{"rotation_period": []int{1}}, "rotation_period"},
		{"config", map[string]interface{}{"access_token_min_ttl": "1s"}, "access_token_min_ttl"},
		{"config", map[string]interface{}{"access_token_min_ttl": "1000h"}, "access_token_min_ttl"},
		{"config", map[string]interface{}{"request_timeout": "-1s"}, "request_timeout"},
		{"config", map[string]interface{}{"request_timeout": "10m"}, "request_timeout"},
		{"config", map[string]interface{}{"disable_automated_rotation": "maybe"}, "disable_automated_rotation"},
		{"config", map[string]interface{}{"verify_connection": map[string]string{"a": "b"}}, "verify_connection"},
		{"config", map[string]interface{}{"colour": "blue"}, "colour"},
		{"rotate-root", map[string]interface{}{"now": true}, "now"},
	}
	for i, tc := range cases {
		t.Run(fmt.Sprintf("%02d_%s_%s", i, tc.path, tc.field), func(t *testing.T) {
			_, err := e.client().Logical().Write(mountPath+"/"+tc.path, tc.data)
			if statusOf(err) != http.StatusBadRequest {
				t.Fatalf("got %v, want a 400", err)
			}
			if !strings.Contains(err.Error(), tc.field) {
				t.Fatalf("error does not name %q: %v", tc.field, err)
			}
			if strings.Contains(err.Error(), e.mock.LoginToken()) {
				t.Fatal("error echoes the login token")
			}
			after := e.readConfig()
			if a, b := mustJSON(before), mustJSON(after); a != b {
				t.Fatalf("config changed:\n%s\n%s", a, b)
			}
		})
	}
	if got := e.mock.Calls(mockctl.OpRefresh); got != 0 {
		t.Fatalf("bad input reached inabit's refresh %d times", got)
	}
}

func mustJSON(v interface{}) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestTokenLeaseRevokeAndDisable(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{AccessTokenTTL: 15 * time.Minute})
	e.configure(nil)
	c := e.client()
	s := e.readToken(c)
	if s.LeaseID == "" || s.Renewable {
		t.Fatalf("lease id %q renewable %v, want a non-renewable lease", s.LeaseID, s.Renewable)
	}
	tok := s.Data["access_token"].(string)
	if !e.mock.AccessTokenValid(tok) || s.Data["token_type"] != "Bearer" {
		t.Fatalf("bad token data %v", s.Data)
	}
	exp, err := time.Parse(time.RFC3339, s.Data["expires_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if limit := time.Until(exp) - 60*time.Second; time.Duration(s.LeaseDuration)*time.Second > limit+time.Second {
		t.Fatalf("lease_duration %ds exceeds remaining life - 60s (%s)", s.LeaseDuration, limit)
	}
	if s.LeaseDuration < 500 {
		t.Fatalf("lease_duration %ds is far below 15m - 60s", s.LeaseDuration)
	}
	// The mount's max lease TTL caps the lease (Vault's core applies it).
	if err := c.Sys().TuneMount(mountPath, api.MountConfigInput{MaxLeaseTTL: "5m"}); err != nil {
		t.Fatal(err)
	}
	if capped := e.readToken(c); capped.LeaseDuration > 300 || capped.LeaseDuration < 290 {
		t.Fatalf("lease_duration %ds with max_lease_ttl=5m, want 300", capped.LeaseDuration)
	}
	if err := c.Sys().Revoke(s.LeaseID); err != nil {
		t.Fatalf("lease revoke: %v", err)
	}
	e.readToken(c)
	e.readToken(c)
	if err := c.Sys().Unmount(mountPath); err != nil {
		t.Fatalf("secrets disable with leases outstanding: %v", err)
	}
}

func TestRotateRootOverAPI(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	old := e.mock.LoginToken()
	s, err := e.client().Logical().Write(mountPath+"/rotate-root", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := s.Data["login_token_expires_at"]; !ok || strings.Contains(mustJSON(s.Data), e.mock.LoginToken()) {
		t.Fatalf("rotate-root response %v", s.Data)
	}
	if e.mock.LoginToken() == old || e.mock.LoginTokenValid(old) {
		t.Fatal("inabit's token did not change")
	}
	e.readToken(e.client())
}

// TestPeriodicRotationAcrossLifetimes: login tokens live 70 s and rotate at 60 s of age; after
// more than three lifetimes the mount still works with no operator action.
func TestPeriodicRotationAcrossLifetimes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{LoginTokenTTL: 70 * time.Second, AccessTokenTTL: 3 * time.Minute})
	e.configure(map[string]interface{}{"rotation_period": "1m", "access_token_min_ttl": "3m"})
	first := e.mock.LoginToken()
	deadline := time.Now().Add(3*70*time.Second + 15*time.Second)
	for time.Now().Before(deadline) {
		e.readToken(e.client())
		time.Sleep(5 * time.Second)
	}
	if got := e.mock.Calls(mockctl.OpRefresh); got < 3 {
		t.Fatalf("only %d rotations in three lifetimes", got)
	}
	if e.mock.LoginTokenValid(first) {
		t.Fatal("the first token is still alive")
	}
	if cfg := e.readConfig(); cfg["last_rotation_error"] != "" {
		t.Fatalf("rotation error: %v", cfg["last_rotation_error"])
	}
}

// TestHACluster: three cores on shared storage. Standbys forward reads and rotate-root; only the
// active core rotates; across five failovers (step-down and seal) the new active keeps rotating,
// no rotation happens twice, and the login token is never lost.
func TestHACluster(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 3, mockctl.Options{LoginTokenTTL: 70 * time.Second})
	// A failover mid-refresh leaves a WAL entry that blocks rotation for refresh_grace_period.
	e.configure(map[string]interface{}{"rotation_period": "1m", "refresh_grace_period": 30})

	standbys := e.standbys()
	if len(standbys) != 2 {
		t.Fatalf("%d standbys, want 2", len(standbys))
	}
	for _, sb := range standbys {
		e.readToken(sb.Client)
	}
	before := e.mock.Calls(mockctl.OpRefresh)
	if _, err := standbys[0].Client.Logical().Write(mountPath+"/rotate-root", nil); err != nil {
		t.Fatalf("rotate-root through a standby: %v", err)
	}
	if got := e.mock.Calls(mockctl.OpRefresh) - before; got != 1 {
		t.Fatalf("rotate-root through a standby made %d refreshes, want 1", got)
	}

	// Five failovers, alternating a step-down with sealing the active core, each followed by a
	// periodic rotation on whichever core is active now.
	for round := 0; round < 5; round++ {
		active := e.waitActive()
		if round%2 == 0 {
			if err := active.Client.Sys().StepDown(); err != nil {
				t.Fatalf("step down: %v", err)
			}
		} else {
			active.Seal(t)
		}
		eventually(t, 60*time.Second, "a new active core", func() bool { return e.waitActive() != active })
		if round%2 == 1 {
			e.cluster.UnsealCore(t, active)
		}
		rotations := e.mock.Calls(mockctl.OpRefresh)
		eventually(t, 90*time.Second, "a periodic rotation on the new active core", func() bool {
			return e.mock.Calls(mockctl.OpRefresh) > rotations
		})
		// A core that has just become a standby (or was just unsealed) answers with a redirect
		// to the active core until its request forwarding is up; Vault's own clients follow it,
		// these test clients refuse redirects, so give forwarding a moment to come up.
		for _, sb := range e.standbys() {
			var lastErr error
			eventually(t, 30*time.Second, "a token read forwarded by the standby", func() bool {
				s, err := sb.Client.Logical().Read(mountPath + "/token")
				lastErr = err
				return err == nil && s != nil
			}, func() string { return fmt.Sprintf("last error: %v", lastErr) })
		}
		e.readToken(e.client())
		if cfg := e.readConfig(); cfg["last_rotation_error"] != "" {
			t.Fatalf("round %d: rotation error %v", round, cfg["last_rotation_error"])
		}
	}
	// Two nodes rotating the same token would present a killed token: inabit would reject it.
	if got := e.mock.Rejected(mockctl.OpRefresh); got != 0 {
		t.Fatalf("%d refreshes presented a dead token: a rotation happened twice", got)
	}
	if !e.mock.LoginTokenValid(e.mock.LoginToken()) {
		t.Fatal("login token lost")
	}
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.standbys()[0].Client.Logical().Read(mountPath + "/token"); err != nil {
				t.Errorf("read through standby: %v", err)
			}
		}()
	}
	wg.Wait()
}

// TestConcurrentReadsDuringRotationAndConfigWrites: 1000 token reads through the HTTP API while
// rotate-root runs and the config is rewritten. No read fails and inabit sees one refresh.
func TestConcurrentReadsDuringRotationAndConfigWrites(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: mockctl.FaultDelay, Delay: 300 * time.Millisecond, Times: 1})
	c := e.client()
	var wg sync.WaitGroup
	errs := make(chan error, 1100)
	sem := make(chan struct{}, 64)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			if _, err := c.Logical().Read(mountPath + "/token"); err != nil {
				errs <- err
			}
		}(i)
		switch i {
		case 100:
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := c.Logical().Write(mountPath+"/rotate-root", nil); err != nil {
					errs <- err
				}
			}()
		case 300, 600:
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if _, err := c.Logical().Write(mountPath+"/config", map[string]interface{}{"rotation_period": fmt.Sprintf("%dh", 100+i)}); err != nil {
					errs <- err
				}
			}(i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("operation failed: %v", err)
	}
	if got := e.mock.Calls(mockctl.OpRefresh); got != 1 {
		t.Fatalf("refreshes = %d, want 1", got)
	}
	if !e.mock.LoginTokenValid(e.mock.LoginToken()) || e.readConfig()["last_rotation_error"] != "" {
		t.Fatal("mount unhealthy after the storm")
	}
}
