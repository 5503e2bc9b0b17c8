package inabit

// Tests of path_config.go: a config write against the rotation's state (a held token, LOST).

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// A config write while a rotated token is held unsaved saves it, with a clean status, no WAL entry
// and no extra rotation (issue 8 defect 8).
func TestConfigWriteWhileTokenHeldSavesItCleanly(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	live := env.mock.LoginToken()
	if storedToken(t, env) == live {
		t.Fatal("setup: storage accepted the rotated token")
	}
	env.storage.failPutsTo(configStorageKey, false)
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "100h"}); err != nil {
		t.Fatal(err)
	}
	if storedToken(t, env) != live {
		t.Fatal("the config write did not save the live token")
	}
	cfg := env.readConfig(t)
	if fmt.Sprint(cfg["rotation_failures"]) != "0" || cfg["last_rotation_error"] != "" {
		t.Fatalf("after the config write: rotation_failures = %v, last_rotation_error = %q; want 0 and empty",
			cfg["rotation_failures"], cfg["last_rotation_error"])
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left after the rotated token was saved", n)
	}
	env.clock.advance(time.Minute + time.Second)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d a minute after the save, want 1 (no extra rotation)", got)
	}
}

// 15.7 (mutation same-token-write-keeps-lost): writing the same, working login token again is
// verified and clears LOST and the status; the same dead token is refused and LOST stays.
func TestWritingTheSameWorkingTokenAgainClearsLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	cfg := storedConfig(t, env)
	cfg.Status = rotation.Status{LoginTokenLost: true, LastRotationError: "LOGIN TOKEN LOST: a gateway's 401, taken for inabit's", RotationFailures: 1}
	if err := putConfig(context.Background(), env.storage, cfg); err != nil {
		t.Fatal(err)
	}
	env.b.login.dropAll()
	env.mock.ResetCalls()
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": cfg.LoginToken}); err != nil {
		t.Fatal(err)
	}
	if env.mock.Calls(mockinabit.OpAccessToken) == 0 {
		t.Fatal("the token written again was not verified")
	}
	got := env.readConfig(t)
	if got["login_token_lost"] != false || got["last_rotation_error"] != "" || got["rotation_failures"] != 0 {
		t.Fatalf("status after writing the working token again: %v", got)
	}
	env.readToken(t)

	cfg = storedConfig(t, env)
	cfg.Status = rotation.Status{LoginTokenLost: true, LastRotationError: "LOGIN TOKEN LOST: real"}
	_ = putConfig(context.Background(), env.storage, cfg)
	env.b.login.dropAll()
	env.mock.IssueLoginToken()
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": cfg.LoginToken}); err == nil {
		t.Fatal("the same dead token was accepted")
	}
	if got := env.readConfig(t); got["login_token_lost"] != true {
		t.Fatal("a refused write cleared LOST")
	}
}

// 15.7 (mutation same-token-write-unverified): the same login token written again, not LOST, is
// verified like a new one: when inabit rejects it the write is refused, nothing is saved, and the
// failing status it would have cleared stays.
func TestWritingTheSameTokenAgainIsVerifiedLikeANewOne(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	cfg := storedConfig(t, env)
	cfg.Status = rotation.Status{LastRotationError: "inabit rejected the login token once; checking again", RotationFailures: 2}
	if err := putConfig(context.Background(), env.storage, cfg); err != nil {
		t.Fatal(err)
	}
	env.b.login.dropAll()
	env.mock.IssueLoginToken() // the stored token is dead at inabit
	env.mock.ResetCalls()
	_, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": cfg.LoginToken})
	if err == nil || env.mock.Calls(mockinabit.OpAccessToken) == 0 {
		t.Fatalf("the same token written again, dead at inabit: write error %v, verified %v", err, env.mock.Calls(mockinabit.OpAccessToken) != 0)
	}
	if got := storedConfig(t, env); got.RotationFailures != 2 || got.LastRotationError != cfg.LastRotationError {
		t.Fatalf("a refused write changed the status: %d failures, %q", got.RotationFailures, got.LastRotationError)
	}
}
