package inabit

// The README's Terraform recipe, driven the way terraform-provider-vault's vault_generic_endpoint
// drives config (vault/resource_generic_endpoint.go): create and update write data_json; read
// reads config and, with ignore_absent_fields, takes the read's value for each key of data_json
// and keeps data_json's own value for keys the read lacks; destroy DELETEs unless
// disable_delete = true. A plan shows drift when the configuration's data_json, normalised,
// differs from the data_json the read put in state.

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// tfEndpoint is one vault_generic_endpoint resource on inabit/config.
type tfEndpoint struct {
	env *testEnv
	// dataJSON is data_json as the configuration has it (what jsonencode writes).
	dataJSON      string
	disableDelete bool
	// state is data_json as the last read left it in Terraform's state.
	state string
}

// normalizeDataJSON is the provider's NormalizeDataJSON: decode into a map, encode again.
func normalizeDataJSON(t *testing.T, s string) string {
	t.Helper()
	var m map[string]interface{}
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// viaJSON is what a value looks like after a trip through Vault's HTTP API and the Go client
// (which decodes numbers as json.Number).
func viaJSON(t *testing.T, v interface{}) map[string]interface{} {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var out map[string]interface{}
	if err := dec.Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// write is the provider's create and update: client.Logical().Write(path, data_json), then read.
func (r *tfEndpoint) write(t *testing.T) (*logical.Response, error) {
	t.Helper()
	var data map[string]interface{}
	if err := json.Unmarshal([]byte(r.dataJSON), &data); err != nil {
		t.Fatal(err)
	}
	resp, err := r.env.request(logical.UpdateOperation, "config", viaJSON(t, data))
	if err == nil && resp.IsError() {
		err = resp.Error()
	}
	if err != nil {
		return resp, err
	}
	r.state = r.dataJSON
	r.read(t)
	return resp, nil
}

// read is the provider's read with ignore_absent_fields = true.
func (r *tfEndpoint) read(t *testing.T) {
	t.Helper()
	var relevant map[string]interface{}
	if err := json.Unmarshal([]byte(r.state), &relevant); err != nil {
		t.Fatal(err)
	}
	for k, v := range viaJSON(t, r.env.readConfig(t)) {
		if _, ok := relevant[k]; ok {
			relevant[k] = v
		}
	}
	out, err := json.Marshal(relevant)
	if err != nil {
		t.Fatal(err)
	}
	r.state = string(out)
}

// drift is `terraform plan` after a refresh: empty when the plan is empty.
func (r *tfEndpoint) drift(t *testing.T) string {
	t.Helper()
	r.read(t)
	if want := normalizeDataJSON(t, r.dataJSON); r.state != want {
		return "configuration " + want + "\n         state " + r.state
	}
	return ""
}

// destroy is the provider's delete: client.Logical().Delete(path), with no data.
func (r *tfEndpoint) destroy() (*logical.Response, error) {
	if r.disableDelete {
		return nil, nil
	}
	return r.env.request(logical.DeleteOperation, "config", nil)
}

func tfDataJSON(t *testing.T, fields map[string]interface{}) string {
	t.Helper()
	raw, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(raw)
}

// The recipe across rotations: the settings never drift, re-applying them saves nothing and never
// touches the login token, the token in the state of a resource that carried it is dead after a
// rotation (its apply fails and the live token stays), and destroy deletes nothing: with
// disable_delete it sends nothing, and without it the plain DELETE is refused while the token
// lives; force=true deletes.
func TestTerraformGenericEndpointRecipeSurvivesRotations(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	// Out of band, once: vault write inabit/config login_token=@login-token.jwt
	env.configure(t, nil)

	settings := map[string]interface{}{
		"url":                        env.srv.URL,
		"rotation_period":            1296000, // 360h, in the integer seconds reads return
		"access_token_min_ttl":       600,
		"request_timeout":            30,
		"refresh_grace_period":       600,
		"disable_automated_rotation": false,
		"verify_connection":          true,
	}
	r := &tfEndpoint{env: env, dataJSON: tfDataJSON(t, settings), disableDelete: true}

	// terraform apply (create): the settings only, nothing saved since they are the defaults.
	env.storage.failPutsTo(configStorageKey, true)
	if _, err := r.write(t); err != nil {
		t.Fatalf("create: %v (a write of unchanged settings must not touch storage)", err)
	}
	env.storage.failPutsTo(configStorageKey, false)
	if d := r.drift(t); d != "" {
		t.Fatalf("plan right after create shows drift:\n%s", d)
	}
	first := storedToken(t, env)

	for i := 0; i < 2; i++ {
		// Between applies the login token rotates (here by rotate-root; a tick does the same).
		if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
			t.Fatal(err)
		}
		live := env.mock.LoginToken()
		if d := r.drift(t); d != "" {
			t.Fatalf("rotation %d: plan shows drift:\n%s", i+1, d)
		}

		// terraform apply -replace (create again): the same settings again save nothing.
		env.storage.failPutsTo(configStorageKey, true)
		if _, err := r.write(t); err != nil {
			t.Fatalf("rotation %d: re-applying the same settings: %v (nothing should have been saved)", i+1, err)
		}
		env.storage.failPutsTo(configStorageKey, false)

		// terraform apply (update) after a change in HCL: the whole data_json is written again.
		settings["access_token_min_ttl"] = 600 - 60*(i+1)
		r.dataJSON = tfDataJSON(t, settings)
		if _, err := r.write(t); err != nil {
			t.Fatalf("rotation %d: update: %v", i+1, err)
		}
		if d := r.drift(t); d != "" {
			t.Fatalf("rotation %d: plan after update shows drift:\n%s", i+1, d)
		}
		if got := storedToken(t, env); got != live {
			t.Fatalf("rotation %d: applying the settings replaced the live login token", i+1)
		}
		env.readToken(t)
	}

	// The anti-pattern: login_token in data_json. After a rotation it is dead: the apply fails,
	// and the live token stays.
	withToken := &tfEndpoint{env: env, dataJSON: tfDataJSON(t, map[string]interface{}{"login_token": first, "url": env.srv.URL})}
	live := env.mock.LoginToken()
	if _, err := withToken.write(t); err == nil || !strings.Contains(err.Error(), "Nothing was saved") {
		t.Fatalf("re-sending the first login token after rotations: err=%v, want the apply to fail with nothing saved", err)
	}
	if storedToken(t, env) != live {
		t.Fatal("re-sending a dead login token replaced the live one")
	}

	// Why integer seconds: "360h" reads back as 1296000, and every plan shows that change.
	settings["rotation_period"] = "360h"
	stringly := &tfEndpoint{env: env, dataJSON: tfDataJSON(t, settings)}
	if _, err := stringly.write(t); err != nil {
		t.Fatal(err)
	}
	if d := stringly.drift(t); d == "" {
		t.Fatal(`"rotation_period": "360h" shows no drift; the recipe's reason for integer seconds is gone`)
	}

	// terraform destroy with disable_delete = true: no request at all.
	if _, err := r.destroy(); err != nil {
		t.Fatal(err)
	}
	if storedToken(t, env) != live {
		t.Fatal("destroy with disable_delete touched the login token")
	}
	// Without disable_delete: the provider's plain DELETE is refused while the token lives.
	r.disableDelete = false
	resp, err := r.destroy()
	if err != nil || resp == nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "force=true") {
		t.Fatalf("plain DELETE of a live login token: resp=%v err=%v, want a 400 saying force=true", resp, err)
	}
	if storedToken(t, env) != live {
		t.Fatal("a refused destroy changed the login token")
	}
	// On purpose: vault delete inabit/config force=true
	if _, err := env.requestOK(logical.DeleteOperation, "config", map[string]interface{}{"force": "true"}); err != nil {
		t.Fatal(err)
	}
	if env.readConfig(t) != nil {
		t.Fatal("config readable after a forced delete")
	}
}

// Settings applied before the login token was written (a first `terraform apply` of the recipe,
// before the out-of-band write): a 400 that names the command to run first, on the real mount, and
// stores nothing.
func TestSettingsBeforeTheLoginTokenSayWhatToWriteFirst(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.CreateOperation, Path: "config", MountPoint: "inabit-admin/", Storage: env.storage,
		Data: viaJSON(t, map[string]interface{}{"rotation_period": 1296000, "verify_connection": true}),
	})
	if err != nil || resp == nil || !resp.IsError() {
		t.Fatalf("settings-only first write: resp=%v err=%v, want a 400", resp, err)
	}
	if msg := resp.Error().Error(); !strings.Contains(msg, "vault write inabit-admin/config login_token=@login-token.jwt") {
		t.Fatalf("refusal %q does not name the command to run first on this mount", msg)
	}
	if env.readConfig(t) != nil {
		t.Fatal("a config was stored")
	}
}
