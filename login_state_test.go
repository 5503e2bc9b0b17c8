package inabit

// Tests of login_state.go: what a node remembers of inabit's answers to reads.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// 15.5 (mutation confirm-read-rejection-skipped): a token inabit rejects on reads (revoked at
// inabit) is stored as LOST, with the event and the warnings, within two ticks.
func TestReadsSeeingInabitRejectTheTokenReportLostWithinTwoTicks(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.IssueLoginToken() // support rotated it outside Vault: the stored token is dead
	if err := env.readTokenErr(); err == nil {
		t.Fatal("a read with a revoked token succeeded")
	}
	env.tick(t) // the same second: one answer might be a glitch
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true {
		t.Fatal("LOST recorded on one answer")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	cfg := env.readConfig(t)
	if cfg["login_token_lost"] != true || !strings.HasPrefix(cfg["last_rotation_error"].(string), "LOGIN TOKEN LOST") {
		t.Fatalf("a token inabit rejects twice is not reported: lost %v, status %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	if !lostEventSent(env) {
		t.Fatal("no lost event")
	}
	if err := env.readTokenErr(); err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("reads after LOST: %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("a dead token was refreshed")
	}
}

// A rejection inabit takes back (the next answer issues a token) is not reported.
func TestOneRejectionThatInabitTakesBackIsNotLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "glitch", Times: 1})
	if err := env.readTokenErr(); err == nil {
		t.Fatal("setup: the glitch did not reach the read")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true || cfg["last_rotation_error"] != "" {
		t.Fatalf("a glitch was reported: %v %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	env.readToken(t)
}

// Mutation fetch-ignores-generation: an access token whose fetch was on the wire when another
// node changed the login token (the invalidation drops this node's config and cache) never fills
// the cache: the next read fetches one with the new login token instead of serving the old one's.
func TestFetchInFlightAcrossInvalidationNeverFillsTheCache(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, nil)
	env.clock.advance(15 * time.Minute) // the cached access token is spent: the next read fetches
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultHoldAfterApply, Times: 1})
	type result struct {
		resp *logical.Response
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := env.requestOK(logical.ReadOperation, "token", nil)
		done <- result{resp, err}
	}()
	select {
	case <-env.mock.Applied(): // inabit minted the access token; its answer is held
	case <-time.After(10 * time.Second):
		t.Fatal("setup: the read's fetch never reached inabit")
	}

	// Meanwhile another node writes a new login token, and this node is told.
	cfg := storedConfig(t, env)
	cfg.LoginToken = env.mock.IssueLoginToken()
	if err := putConfig(context.Background(), env.storage, cfg); err != nil {
		t.Fatal(err)
	}
	env.b.InvalidateKey(context.Background(), configStorageKey)
	env.mock.ClearFaults() // the held answer arrives
	first := <-done
	if first.err != nil {
		t.Fatalf("setup: the read across the invalidation failed: %v", first.err)
	}
	old := first.resp.Data["access_token"]

	env.mock.ResetCalls()
	resp := env.readToken(t)
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 || resp.Data["access_token"] == old {
		t.Fatalf("after the login token changed, a read made %d access-token calls and served the token fetched with the old login token: %v",
			got, resp.Data["access_token"] == old)
	}
}
