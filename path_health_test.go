package inabit

// Tests of path_health.go: one field that says whether a mount needs a human.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func (e *testEnv) readHealth(t *testing.T) map[string]interface{} {
	t.Helper()
	resp, err := e.request(logical.ReadOperation, "health", nil)
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("health read: %v %v", resp, err)
	}
	if cfg, _ := readConfig(context.Background(), e.storage); cfg != nil {
		for k, v := range resp.Data {
			if s, ok := v.(string); ok && strings.Contains(s, cfg.LoginToken) {
				t.Fatalf("health's %s carries the login token", k)
			}
		}
	}
	return resp.Data
}

func TestHealthSaysAnUnconfiguredMountNeedsAHuman(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	h := env.readHealth(t)
	if h["state"] != "unconfigured" || h["needs_human"] != true || !strings.Contains(h["reason"].(string), "config") {
		t.Fatalf("health of an unconfigured mount: %v", h)
	}
}

func TestHealthOfAWorkingMountIsHealthy(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	h := env.readHealth(t)
	if h["state"] != "healthy" || h["needs_human"] != false || h["reason"] != "" || h["login_token_expires_at"] == "" || h["next_rotation_at"] == "" {
		t.Fatalf("health of a working mount: %v", h)
	}
}

// A token inabit revoked shows up as needs_human within two ticks (LOST), with what to do.
func TestHealthReportsARevokedTokenAsNeedingAHuman(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.IssueLoginToken()
	_ = env.readTokenErr()
	env.tick(t)
	env.clock.advance(time.Minute)
	env.tick(t)
	h := env.readHealth(t)
	if h["state"] != "lost" || h["needs_human"] != true || !strings.Contains(h["reason"].(string), "LOGIN TOKEN LOST") {
		t.Fatalf("health after inabit revoked the token: %v", h)
	}
}

// A rotated token that storage refuses is held in memory: a restart would lose it, so a human
// must look at storage now.
func TestHealthReportsAnUnsavedRotatedTokenAsNeedingAHuman(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		env.storage.failPutsTo(configStorageKey, true)
	}})
	env.configure(t, nil)
	_, _ = env.request(logical.UpdateOperation, "rotate-root", nil)
	h := env.readHealth(t)
	if h["state"] != "unsaved" || h["needs_human"] != true || !strings.Contains(h["reason"].(string), "storage") {
		t.Fatalf("health with a rotated token storage refused: %v", h)
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.tick(t) // the tick saves it
	if h := env.readHealth(t); h["needs_human"] != false {
		t.Fatalf("health once storage saved the held token: %v", h)
	}
}
