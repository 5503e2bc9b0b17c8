package inabit

// Tests of rotation_outcome.go's status write: retried, never over a newer token, shown if refused.

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// A status write never replaces a newer token another node saved meanwhile, nor calls it LOST
// (issue 8 defect 7).
func TestStatusWriteNeverOverwritesANewerToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	var otherNodes string
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		// While our refresh is on the wire, another node saves a token it got from inabit.
		cfg, err := readConfig(context.Background(), env.storage)
		if err != nil || cfg == nil {
			t.Errorf("other node: %v", err)
			return
		}
		otherNodes = env.mock.IssueLoginToken()
		cfg.LoginToken = otherNodes
		cfg.LoginTokenStoredAt = env.clock.now()
		if err := putConfig(context.Background(), env.storage, cfg); err != nil {
			t.Errorf("other node: %v", err)
		}
	}})
	env.configure(t, nil)

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	if otherNodes == "" {
		t.Fatal("setup: no refresh was sent")
	}
	cfg := storedConfig(t, env)
	if cfg.LoginToken != otherNodes {
		t.Fatalf("a status write replaced the token another node saved (stored token live at inabit: %v; status %q)",
			env.mock.LoginTokenValid(cfg.LoginToken), cfg.LastRotationError)
	}
	if strings.Contains(cfg.LastRotationError, "LOGIN TOKEN LOST") {
		t.Fatalf("status says LOST while the stored token is live: %q", cfg.LastRotationError)
	}
}

// The refresh's outcome is unknown (inabit swallowed it), and the status write that records it
// fails. Storage says "outcome unknown, checked again at" (the in-flight mark), and so does a
// config read on the active node, which serves config from its cache. (The review found the cache
// still healthy: no error, the old next_rotation_at, token reads without a warning, while no
// refresh may be sent for 10m.)
func TestFailedStatusWriteNeverLeavesActiveNodeReportingHealthy(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	env.readConfig(t) // the active node serves config from its cache
	env.storage.failPutsAfter(configStorageKey, 1)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Times: 1})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	env.storage.failPutsTo(configStorageKey, false)
	stored := storedConfig(t, env).LastRotationError
	if !strings.Contains(stored, "outcome unknown") || walCount(t, env) != 1 {
		t.Fatalf("setup: stored status %q, WAL entries %d", stored, walCount(t, env))
	}
	cfg := env.readConfig(t)
	warnings := env.readToken(t).Warnings
	if s, _ := cfg["last_rotation_error"].(string); !strings.Contains(s, "outcome unknown") {
		t.Fatalf("storage says %q but config read on the active node says last_rotation_error=%q, next_rotation_at=%v; token read warnings %q",
			stored, s, cfg["next_rotation_at"], warnings)
	}
}

// Mutation status-write-not-retried: storage that refuses a rotation's status write once and then
// recovers still ends up holding the status the rotation concluded, not the in-flight mark that
// says "outcome unknown" (which holds every refresh back until it is settled).
func TestStatusWriteRefusedOnceIsRetried(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		// The in-flight status is written; storage refuses the next config write, once.
		env.storage.refuseNextPuts(configStorageKey, 1)
	}})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "60",
		ContentType: "application/json", Body: `{"errors":[{"message":"too many refreshes"}]}`, Times: 1})
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("setup: rotate-root succeeded")
	}
	env.storage.mu.Lock()
	refused := env.storage.refuseNext[configStorageKey] == 0
	env.storage.mu.Unlock()
	if !refused {
		t.Fatal("setup: storage never refused the status write")
	}
	cfg := storedConfig(t, env)
	if cfg.RotationFailures != 1 || strings.Contains(cfg.LastRotationError, "outcome unknown") ||
		!strings.Contains(cfg.LastRotationError, "rate-limited") {
		t.Fatalf("storage refused the status write once; stored status: %d failures, %q", cfg.RotationFailures, cfg.LastRotationError)
	}
}
