package inabit

// Tests of rejections (rotation.go's checks, rotation_outcome.go's conclusions): kept across
// restarts and refused writes; LOST stays.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// LOGIN TOKEN LOST stays, and neither ticks, rotate-root nor token reads call inabit with the
// dead token, until a new login token is written (issue 8 defect 5: LOST was overwritten a minute
// later).
func TestLostStaysAndCallsNothingUntilANewLoginToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDropAfterApply, Times: 1})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	if !strings.HasPrefix(rotationStatus(t, env), "LOGIN TOKEN LOST") {
		// A dropped answer is ambiguous: settled after the grace period.
		env.clock.advance(pastGrace)
		env.tick(t)
	}
	if s := rotationStatus(t, env); !strings.HasPrefix(s, "LOGIN TOKEN LOST") {
		t.Fatalf("setup: status = %q, want LOGIN TOKEN LOST", s)
	}
	refreshes, probes := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken)

	var elapsed time.Duration
	for d := time.Minute; d <= 2*time.Hour; d *= 2 {
		env.clock.advance(d)
		elapsed += d
		env.tick(t)
		if got := env.mock.Calls(mockinabit.OpRefresh); got != refreshes {
			t.Fatalf("%s after LOST: %d refreshes sent with a token known to be dead; status now %q", elapsed, got-refreshes, rotationStatus(t, env))
		}
		if got := env.mock.Calls(mockinabit.OpAccessToken); got != probes {
			t.Fatalf("%s after LOST: a tick called inabit %d times", elapsed, got-probes)
		}
		if s := rotationStatus(t, env); !strings.HasPrefix(s, "LOGIN TOKEN LOST") {
			t.Fatalf("%s after LOST: status = %q", elapsed, s)
		}
	}
	cfg := env.readConfig(t)
	if cfg["login_token_lost"] != true || cfg["next_rotation_at"] != "" {
		t.Fatalf("config read while lost: login_token_lost = %v, next_rotation_at = %v; want true and empty", cfg["login_token_lost"], cfg["next_rotation_at"])
	}

	_, err = env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("rotate-root while lost: err = %v, want the LOST message", err)
	}
	_, err = env.requestOK(logical.ReadOperation, "token", nil)
	if err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("token read while lost: err = %v, want the LOST message", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != refreshes || env.mock.Calls(mockinabit.OpAccessToken) != probes {
		t.Fatal("rotate-root or a token read called inabit with a token known to be dead")
	}

	env.mock.IssueLoginToken()
	env.configure(t, nil) // writes the new login token
	cfg = env.readConfig(t)
	if cfg["last_rotation_error"] != "" || cfg["login_token_lost"] == true {
		t.Fatalf("after a new login token: %v", cfg)
	}
	env.readToken(t)
}

// inabit rejected the refresh (UNAUTHENTICATED) and the probe met a WAF page. The stored status
// promises "no refresh is sent with it until inabit confirms it works", and that holds on this
// node and after a plugin restart. (The review found the rejection kept only in memory: after a
// restart the next tick sent a refresh with the token inabit said is dead.)
func TestRestartRemembersRejectionAndNeverRefreshesTheDeadToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.IssueLoginToken() // the stored token was revoked outside Vault
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, ContentType: "text/html",
		Body: "<html><title>403 Forbidden</title></html>"})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	status := rotationStatus(t, env)
	if !strings.Contains(status, "no refresh is sent with it") {
		t.Fatalf("setup: rotate-root %v; status %q", err, status)
	}
	env.clock.advance(5 * time.Minute)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("setup: the same node refreshed the rejected token (%d refreshes)", got)
	}

	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil)
	env.clock.advance(10 * time.Minute)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("after a plugin restart a tick sent a refresh with the token inabit rejected, while the stored status said %q", status)
	}
}

// 15.8 (mutation no-probe-before-refresh): a LOST that storage refused to record is not
// forgotten by a restart: the restarted node never refreshes the dead token.
func TestRestartNeverRefreshesATokenWhoseLostStorageRefused(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h", "access_token_min_ttl": "15m"})
	env.mock.IssueLoginToken() // revoked at inabit
	_ = env.readTokenErr()
	env.storage.failPutsTo(configStorageKey, true)
	env.clock.advance(time.Minute)
	env.tick(t) // confirms LOST, but storage refuses to record it
	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil) // a restart forgets everything in memory
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(2 * time.Hour) // rotation is due
	env.tick(t)
	env.clock.advance(time.Minute) // a restarted node's first rejection is one answer; the next tick's is the second
	env.tick(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 0 {
		t.Fatalf("the restarted node refreshed a token inabit had rejected (%d refreshes)", got)
	}
	if cfg := env.readConfig(t); cfg["login_token_lost"] != true {
		t.Fatalf("LOST not recorded once storage worked: %q", cfg["last_rotation_error"])
	}
}

// A probe that finds the stored token dead, whose LOST
// storage refuses to record, is asked again by a tick once storage works, and LOST is recorded
// there, not only in the node's memory (whose reads then never ask inabit again).
func TestLostThatStorageRefusedIsRecordedByATickOnceStorageWorks(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "360h"})
	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil) // a restart: no proof of life, so rotate-root probes first
	env.mock.IssueLoginToken()   // revoked at inabit
	env.storage.failPutsTo(configStorageKey, true)
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("rotate-root with a revoked token succeeded")
	}
	if storedConfig(t, env).LoginTokenLost || env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("test setup: storage recorded LOST, or a refresh was sent")
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(time.Minute)
	env.tick(t)
	if st := storedConfig(t, env); !st.LoginTokenLost {
		t.Fatalf("LOST not recorded in storage once it worked: %q", st.LastRotationError)
	}
}
