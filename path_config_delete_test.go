package inabit

// Tests of path_config.go's delete: no tool destroys the only live login token by accident.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// deleteConfig sends a delete of config on the mount inabit-admin/, with data as Vault passes a
// DELETE's query string (`vault delete inabit-admin/config force=true`, `?force=true`): strings.
func deleteConfig(env *testEnv, data map[string]interface{}) (*logical.Response, error) {
	return env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.DeleteOperation, Path: "config", MountPoint: "inabit-admin/", Data: data, Storage: env.storage,
	})
}

// A plain delete (terraform destroy, a script's DELETE) of a config holding a live login token is
// a 400 that says how to force it and deletes nothing; force=true deletes.
func TestConfigDeleteRefusesWhileLoginTokenLiveUnlessForced(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	live := storedToken(t, env)

	for _, data := range []map[string]interface{}{nil, {"force": "false"}} {
		resp, err := deleteConfig(env, data)
		if err != nil || resp == nil || !resp.IsError() {
			t.Fatalf("delete %v of a config holding a live login token: resp=%v err=%v, want a 400", data, resp, err)
		}
		msg := resp.Error().Error()
		for _, want := range []string{"live login token", "Nothing was deleted", `vault delete inabit-admin/config force=true`, "DELETE /v1/inabit-admin/config?force=true"} {
			if !strings.Contains(msg, want) {
				t.Errorf("refusal %q does not say %q", msg, want)
			}
		}
		if storedToken(t, env) != live {
			t.Fatal("a refused delete changed the stored login token")
		}
		env.readToken(t)
	}

	if resp, err := deleteConfig(env, map[string]interface{}{"force": "true"}); err != nil || resp.IsError() {
		t.Fatalf("delete with force=true: resp=%v err=%v", resp, err)
	}
	if env.readConfig(t) != nil {
		t.Fatal("config still readable after a forced delete")
	}
}

// A config whose login token is known lost, or expired, holds nothing to lose: a plain delete goes
// through.
func TestConfigDeleteOfDeadLoginTokenNeedsNoForce(t *testing.T) {
	for _, kill := range []struct {
		name string
		do   func(env *testEnv)
	}{
		{"lost", func(env *testEnv) {
			cfg := storedConfig(t, env)
			cfg.LoginTokenLost = true
			if err := putConfig(context.Background(), env.storage, cfg); err != nil {
				t.Fatal(err)
			}
			env.b.InvalidateKey(context.Background(), configStorageKey)
		}},
		{"expired", func(env *testEnv) {
			env.clock.advance(time.Until(storedConfig(t, env).claims().ExpiresAt) + time.Minute)
		}},
	} {
		t.Run(kill.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"disable_automated_rotation": true})
			kill.do(env)
			if resp, err := deleteConfig(env, nil); err != nil || resp.IsError() {
				t.Fatalf("plain delete of a config whose login token is %s: resp=%v err=%v", kill.name, resp, err)
			}
			if env.readConfig(t) != nil {
				t.Fatal("config still readable after delete")
			}
		})
	}
}
