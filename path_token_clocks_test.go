package inabit

// Tests of path_token.go's reads when clocks disagree (Vault's and inabit's, a node's own clock
// stepping back) and when a node is behind another node's rotation.

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// With Vault's clock 6 minutes ahead of inabit's, reads within a second share one access token
// (issue 8 defect 11: clock skew).
func TestTokenCacheHoldsWithVaultClockAheadOfInabit(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{Now: time.Now}) // inabit keeps real time
	env.clock.advance(6 * time.Minute)                      // Vault is 6 minutes ahead
	env.configure(t, nil)
	env.mock.ResetCalls()
	for i := 0; i < 3; i++ {
		env.readToken(t)
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got > 1 {
		t.Fatalf("3 token reads within a second made %d upstream calls with Vault's clock 6m ahead, want at most 1", got)
	}
}

// With Vault's clock 3 minutes behind inabit's, the lease never outlives the access token (issue 8
// defect 11).
func TestLeaseNeverOutlivesAccessTokenWithVaultClockBehind(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{Now: time.Now})
	env.clock.advance(-3 * time.Minute) // Vault is 3 minutes behind
	env.configure(t, nil)
	resp := env.readToken(t)
	claims, err := parseClaims(resp.Data["access_token"].(string))
	if err != nil || claims.ExpiresAt.IsZero() {
		t.Fatalf("access token claims: %v", err)
	}
	limit := time.Until(claims.ExpiresAt) - leaseSafetyMargin + 2*time.Second // seconds resolution
	if resp.Secret.TTL > limit {
		t.Fatalf("lease TTL = %s with Vault's clock 3m behind, but the token really dies in %s (want TTL <= %s)",
			resp.Secret.TTL, time.Until(claims.ExpiresAt).Truncate(time.Second), limit.Truncate(time.Second))
	}
}

// 15.9 (mutation unauthenticated-read-no-reread): a node that has not yet seen another node's
// rotation re-reads storage before telling a client to replace a token that works.
func TestNodeBehindAnotherNodesRotationRereadsStorageBeforeBlamingTheToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	behind := newNode(t, env, nil)
	read := func(b *backend) (*logical.Response, error) {
		return b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage})
	}
	if resp, err := read(behind); err != nil || resp.IsError() {
		t.Fatalf("setup read: %v %v", resp, err)
	}
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	// behind has not been invalidated: its cached config still holds the old, now dead token.
	resp, err := read(behind)
	if err != nil || resp.IsError() {
		t.Fatalf("a node behind the rotation failed a read with a working stored token: %v %v", resp, err)
	}
	if !env.mock.AccessTokenValid(resp.Data["access_token"].(string)) {
		t.Fatal("served access token is not valid")
	}
}

// 15.4 (mutation access-cache-wall-clock): a wall-clock step backwards never makes an expired
// access token look fresh or gives it a long lease.
func TestBackwardClockStepNeverServesAnExpiredAccessToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, nil)
	first := env.readToken(t).Data["access_token"].(string)
	env.clock.advance(16 * time.Minute) // the token has expired
	env.clock.step(-2 * time.Hour)      // and the wall clock steps back two hours
	resp := env.readToken(t)
	if resp.Data["access_token"] == first {
		t.Fatal("served the expired access token after a backward clock step")
	}
	if resp.Secret.TTL > 15*time.Minute {
		t.Fatalf("lease TTL %s outlives a 15-minute token", resp.Secret.TTL)
	}
}

// accessHookTransport runs onAccess before every access-token call it forwards.
type accessHookTransport struct {
	base     http.RoundTripper
	onAccess func()
}

func (h *accessHookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if !bytes.Contains(body, []byte("refreshApiUserLoginToken")) {
		h.onAccess()
	}
	return h.base.RoundTrip(r)
}

// Mutation reread-unbounded: a read that inabit answers UNAUTHENTICATED re-reads storage and
// tries the stored token once, not again and again while storage keeps moving: one read makes at
// most two access-token calls.
func TestReadRetriesWithTheStoredTokenOnlyOnce(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	var mu sync.Mutex
	moves := 0
	env.b.newAPI = apiOver(&accessHookTransport{base: http.DefaultTransport, onAccess: func() {
		mu.Lock()
		defer mu.Unlock()
		if moves == 0 || moves > 5 {
			return // the config write's verification, or enough
		}
		// Every call finds storage holding yet another token (bounded here, so a mutant ends).
		moves++
		cfg, err := readConfig(context.Background(), env.storage)
		if err != nil || cfg == nil {
			t.Errorf("reading storage: %v", err)
			return
		}
		cfg.LoginToken = env.mock.IssueLoginToken()
		if err := putConfig(context.Background(), env.storage, cfg); err != nil {
			t.Errorf("writing storage: %v", err)
		}
	}})
	env.configure(t, forceFetch)
	mu.Lock()
	moves = 1
	mu.Unlock()
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "Unauthorized"})
	env.mock.ResetCalls()
	if err := env.readTokenErr(); err == nil {
		t.Fatal("setup: a read inabit rejects every time succeeded")
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 2 {
		t.Fatalf("one read made %d access-token calls, want 2 (the cached token, then the stored one once)", got)
	}
}
