package inabit

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func storedToken(t testing.TB, env *testEnv) string {
	t.Helper()
	cfg, err := readConfig(context.Background(), env.storage.Storage)
	if err != nil || cfg == nil {
		t.Fatalf("stored config: %v %v", cfg, err)
	}
	return cfg.LoginToken
}

func walCount(t testing.TB, env *testEnv) int {
	t.Helper()
	ids, err := framework.ListWAL(context.Background(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	return len(ids)
}

func TestRotateRoot(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	oldLogin := env.mock.LoginToken()
	oldAccess := env.readToken(t).Data["access_token"]

	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	if env.mock.LoginTokenValid(oldLogin) {
		t.Fatal("old login token still alive at inabit")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatal("stored login token is not the one inabit now accepts")
	}
	if len(resp.Data) != 2 || resp.Data["login_token_expires_at"] == "" || resp.Data["last_rotated_at"] == "" {
		t.Fatalf("rotate-root response = %v, want login_token_expires_at and last_rotated_at only", resp.Data)
	}
	if got := env.readToken(t).Data["access_token"]; got == oldAccess {
		t.Fatal("rotate-root did not drop the cached access token")
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left after a clean rotation", n)
	}
	cfg := env.readConfig(t)
	if cfg["last_rotated_at"] != resp.Data["last_rotated_at"] || cfg["last_rotation_error"] != "" || cfg["rotation_failures"] != 0 {
		t.Fatalf("status after rotation: %v", cfg)
	}
	if ev := env.eventTypes(); len(ev) != 1 || ev[0] != eventRotate {
		t.Fatalf("events = %v, want one %s", ev, eventRotate)
	}
}

func TestRotateRootRejectsFieldsAndNeedsConfig(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "inabit/config") {
		t.Fatalf("without config: resp=%v err=%v", resp, err)
	}
	env.configure(t, nil)
	resp, err = env.request(logical.UpdateOperation, "rotate-root", map[string]interface{}{"force": true})
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "force") {
		t.Fatalf("with unknown field: resp=%v err=%v", resp, err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("a rejected rotate-root called inabit")
	}
}

// 15.13 (mutation held-token-claimed-after-step-down): after a step-down in the middle of a
// rotation, rotate-root says the new token is gone, not that it is held on "the active node".
func TestRotateRootAfterStepDownSaysTheNewTokenIsGone(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		env.b.stopping.Store(true) // Vault's Clean starts: this node is stepping down
		env.storage.failPutsTo(configStorageKey, true)
	}})
	env.configure(t, nil)
	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil && !resp.IsError() {
		t.Fatalf("rotate-root answered success after a step-down lost the new token: %v", resp)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	} else {
		msg = resp.Error().Error()
	}
	if strings.Contains(msg, "held in memory") || !strings.Contains(msg, "stopped being the active node") {
		t.Fatalf("rotate-root after a step-down: %q", msg)
	}
}
