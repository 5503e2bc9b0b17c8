package inabit

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// makeJWT builds a token with the given claims; the signature is irrelevant to the plugin.
func makeJWT(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("test-key-not-inabit"))
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestConfigWriteDefaultsAndRead(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	if got := env.readConfig(t); got != nil {
		t.Fatalf("read before write = %v, want nothing", got)
	}
	env.configure(t, nil)
	got := env.readConfig(t)

	if _, ok := got["login_token"]; ok {
		t.Fatal("config read returned login_token")
	}
	for k, v := range got {
		if s, ok := v.(string); ok && strings.Contains(s, env.mock.LoginToken()) {
			t.Fatalf("config read field %s carries the token", k)
		}
	}
	want := map[string]interface{}{
		"url":                        env.srv.URL,
		"rotation_period":            int64(360 * 3600),
		"disable_automated_rotation": false,
		"access_token_min_ttl":       int64(600),
		"request_timeout":            int64(30),
		"verify_connection":          true,
		"last_rotated_at":            "",
		"last_rotation_error":        "",
		"rotation_failures":          0,
	}
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("%s = %#v, want %#v", k, got[k], v)
		}
	}
	for _, k := range []string{"login_token_issued_at", "login_token_expires_at", "next_rotation_at"} {
		if _, err := time.Parse(time.RFC3339, got[k].(string)); err != nil {
			t.Errorf("%s = %q, want RFC 3339", k, got[k])
		}
	}
	issued, _ := time.Parse(time.RFC3339, got["login_token_issued_at"].(string))
	next, _ := time.Parse(time.RFC3339, got["next_rotation_at"].(string))
	if d := next.Sub(issued); d != 360*time.Hour {
		t.Errorf("next_rotation_at - issued_at = %s, want 360h", d)
	}
}

func TestConfigDefaultURLIsInabit(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": env.mock.LoginToken(), "verify_connection": false,
	})
	if err != nil || resp.IsError() {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	if got := env.readConfig(t)["url"]; got != "https://api.inabit.com/graphql" {
		t.Fatalf("default url = %v", got)
	}
}

func TestConfigUpdateKeepsTokenAndChangesFields(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"rotation_period": "48h", "disable_automated_rotation": true, "access_token_min_ttl": "5m",
		"request_timeout": 10, "verify_connection": false,
	})
	if err != nil || resp.IsError() {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	got := env.readConfig(t)
	if got["rotation_period"] != int64(48*3600) || got["disable_automated_rotation"] != true ||
		got["access_token_min_ttl"] != int64(300) || got["request_timeout"] != int64(10) || got["verify_connection"] != false {
		t.Fatalf("update not applied: %v", got)
	}
	if got["next_rotation_at"] != "" {
		t.Fatalf("next_rotation_at = %v with automated rotation disabled, want empty", got["next_rotation_at"])
	}
	cfg, _ := readConfig(context.Background(), env.storage)
	if cfg.LoginToken != env.mock.LoginToken() {
		t.Fatal("update without login_token lost the stored token")
	}
	env.readToken(t)
}

func TestConfigSavedOnlyWhenChanged(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsTo(configStorageKey, true)
	// Same values again: nothing to save, so failing storage must not matter.
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"url": env.srv.URL, "rotation_period": "360h"})
	if err != nil || resp.IsError() {
		t.Fatalf("unchanged write touched storage: resp=%v err=%v", resp, err)
	}
	// A real change must reach storage, so now it fails.
	_, err = env.request(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "100h"})
	if err == nil {
		t.Fatal("changed write with failing storage reported success")
	}
}

func TestConfigBadInput(t *testing.T) {
	now := time.Now()
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 30 * 24 * time.Hour})
	env.configure(t, nil)
	before := env.readConfig(t)
	short := makeJWT(t, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(2 * time.Hour).Unix()})

	cases := []struct {
		name      string
		data      map[string]interface{}
		wantField string
	}{
		{"empty token", map[string]interface{}{"login_token": ""}, "login_token"},
		{"spaces token", map[string]interface{}{"login_token": "   "}, "login_token"},
		{"not a JWT", map[string]interface{}{"login_token": "hello"}, "login_token"},
		{"two parts", map[string]interface{}{"login_token": "abc.def"}, "login_token"},
		{"garbage parts", map[string]interface{}{"login_token": "a!.b!.c!"}, "login_token"},
		{"bearer prefix", map[string]interface{}{"login_token": "Bearer " + env.mock.LoginToken()}, "login_token"},
		{"control char", map[string]interface{}{"login_token": "eyJ\x00.x.y"}, "login_token"},
		{"expired", map[string]interface{}{"login_token": makeJWT(t, jwt.MapClaims{"iat": now.Add(-48 * time.Hour).Unix(), "exp": now.Add(-time.Hour).Unix()})}, "login_token"},
		{"absurd future", map[string]interface{}{"login_token": makeJWT(t, jwt.MapClaims{"exp": now.Add(100 * 365 * 24 * time.Hour).Unix()})}, "login_token"},
		{"issued in future", map[string]interface{}{"login_token": makeJWT(t, jwt.MapClaims{"iat": now.Add(time.Hour).Unix(), "exp": now.Add(48 * time.Hour).Unix()})}, "login_token"},
		{"huge token", map[string]interface{}{"login_token": strings.Repeat("a", 1<<20)}, "login_token"},
		{"http non-loopback", map[string]interface{}{"url": "http://api.inabit.com/graphql"}, "url"},
		{"ftp scheme", map[string]interface{}{"url": "ftp://127.0.0.1/graphql"}, "url"},
		{"relative url", map[string]interface{}{"url": "/graphql"}, "url"},
		{"credentials", map[string]interface{}{"url": "https://user:pw@api.inabit.com/graphql"}, "url"},
		{"fragment", map[string]interface{}{"url": "https://api.inabit.com/graphql#x"}, "url"},
		{"url with newline", map[string]interface{}{"url": "https://api.inabit.com/\ngraphql"}, "url"},
		{"huge url", map[string]interface{}{"url": "https://api.inabit.com/" + strings.Repeat("a", 1<<20)}, "url"},
		{"metadata ipv4", map[string]interface{}{"url": "https://169.254.169.254/latest/meta-data", "login_token": env.mock.LoginToken()}, "url"},
		{"metadata ipv6", map[string]interface{}{"url": "https://[fd00:ec2::254]/", "login_token": env.mock.LoginToken()}, "url"},
		{"link-local ipv6", map[string]interface{}{"url": "https://[fe80::1]/graphql", "login_token": env.mock.LoginToken()}, "url"},
		{"mapped metadata", map[string]interface{}{"url": "https://[::ffff:169.254.169.254]/", "login_token": env.mock.LoginToken()}, "url"},
		{"alibaba metadata", map[string]interface{}{"url": "https://100.100.100.200/", "login_token": env.mock.LoginToken()}, "url"},
		{"unspecified", map[string]interface{}{"url": "https://0.0.0.0/graphql", "login_token": env.mock.LoginToken()}, "url"},
		{"gcp metadata name", map[string]interface{}{"url": "https://metadata.google.internal/computeMetadata/v1/", "login_token": env.mock.LoginToken()}, "url"},
		{"gcp metadata name dot", map[string]interface{}{"url": "https://metadata.google.internal./", "login_token": env.mock.LoginToken()}, "url"},
		{"http unspecified", map[string]interface{}{"url": "http://0.0.0.0:8200/graphql", "login_token": env.mock.LoginToken()}, "url"},
		{"http link-local", map[string]interface{}{"url": "http://169.254.169.254/", "login_token": env.mock.LoginToken()}, "url"},
		{"huge schedule", map[string]interface{}{"rotation_schedule": "0" + strings.Repeat(",0", 1<<19) + " * * * *"}, "rotation_schedule"},
		{"rotation too short", map[string]interface{}{"rotation_period": "30s"}, "rotation_period"},
		{"rotation negative", map[string]interface{}{"rotation_period": "-1h"}, "rotation_period"},
		{"rotation huge", map[string]interface{}{"rotation_period": "100000h"}, "rotation_period"},
		{"rotation not duration", map[string]interface{}{"rotation_period": "soon"}, "rotation_period"},
		{"rotation >= lifetime", map[string]interface{}{"rotation_period": "720h"}, "rotation_period"},
		{"rotation >= new token lifetime", map[string]interface{}{"login_token": short, "rotation_period": "3h", "verify_connection": false}, "rotation_period"},
		{"min ttl too small", map[string]interface{}{"access_token_min_ttl": "10s"}, "access_token_min_ttl"},
		{"min ttl huge", map[string]interface{}{"access_token_min_ttl": "1000h"}, "access_token_min_ttl"},
		{"timeout zero", map[string]interface{}{"request_timeout": 0}, "request_timeout"},
		{"timeout huge", map[string]interface{}{"request_timeout": "1h"}, "request_timeout"},
		{"bool wrong type", map[string]interface{}{"disable_automated_rotation": "perhaps"}, "disable_automated_rotation"},
		{"verify wrong type", map[string]interface{}{"verify_connection": []string{"x"}}, "verify_connection"},
		{"unknown field", map[string]interface{}{"login_tokn": "x"}, "login_tokn"},
		{"token rejected by inabit", map[string]interface{}{"login_token": makeJWT(t, jwt.MapClaims{"iat": now.Unix(), "exp": now.Add(30 * 24 * time.Hour).Unix()})}, "login_token"},
		{"unreachable url", map[string]interface{}{"url": "http://127.0.0.1:1/graphql", "request_timeout": 1}, "login_token"},
		{"force on a write", map[string]interface{}{"force": true, "rotation_period": "100h"}, "force"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := env.request(logical.UpdateOperation, "config", tc.data)
			if err != nil {
				t.Fatalf("got internal error %v, want a 400", err)
			}
			if !resp.IsError() {
				t.Fatalf("accepted bad input: %v", resp)
			}
			msg := resp.Error().Error()
			if !strings.Contains(msg, tc.wantField) {
				t.Errorf("error %q does not name field %q", msg, tc.wantField)
			}
			// A url refused by policy is refused as written, before any request is sent.
			if tc.wantField == fieldURL && !strings.HasPrefix(msg, fieldURL+" ") {
				t.Errorf("error %q is not a refusal of the url as written", msg)
			}
			if strings.Contains(msg, env.mock.LoginToken()) {
				t.Error("error echoes the login token")
			}
			if got := env.readConfig(t); !reflect.DeepEqual(got, before) {
				t.Errorf("config changed after a rejected write:\nbefore %v\nafter  %v", before, got)
			}
		})
	}
}

func TestConfigFirstWriteRequiresToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"url": env.srv.URL})
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "login_token is required") {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	if env.readConfig(t) != nil {
		t.Fatal("a config was stored")
	}
}

func TestConfigAcceptsLoopbackHTTPAndTrimsNewline(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	for _, host := range []string{"localhost", "127.0.0.2", "[::1]"} {
		u, err := validateURL("http://" + host + ":8300/graphql")
		if err != nil || u == "" {
			t.Errorf("loopback %s rejected: %v", host, err)
		}
	}
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": env.mock.LoginToken() + "\n", "url": env.srv.URL,
	})
	if err != nil || resp.IsError() {
		t.Fatalf("token with trailing newline: resp=%v err=%v", resp, err)
	}
	env.readToken(t)
}

func TestConfigVerifyConnectionOffSavesUnverifiedToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tok := makeJWT(t, jwt.MapClaims{"iat": time.Now().Unix(), "exp": time.Now().Add(24 * time.Hour).Unix()})
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": tok, "url": env.srv.URL, "verify_connection": false, "rotation_period": "1h",
	})
	if err != nil || resp.IsError() {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	if env.mock.Calls(mockinabit.OpAccessToken) != 0 {
		t.Fatal("verify_connection=false still called inabit")
	}
	if _, err := env.request(logical.ReadOperation, "token", nil); err == nil {
		t.Fatal("token read with a token inabit rejects succeeded")
	}
}

func TestConfigWriteDropsCachedAccessToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	first := env.readToken(t).Data["access_token"]
	if got := env.readToken(t).Data["access_token"]; got != first {
		t.Fatal("second read did not use the cache")
	}
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": 20})
	if err != nil || resp.IsError() {
		t.Fatal(resp, err)
	}
	if got := env.readToken(t).Data["access_token"]; got == first {
		t.Fatal("config write did not drop the cached access token")
	}
}

func TestConfigDeleteForgetsEverything(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.readToken(t)
	if _, err := env.requestOK(logical.DeleteOperation, "config", map[string]interface{}{"force": true}); err != nil {
		t.Fatal(err)
	}
	if env.readConfig(t) != nil {
		t.Fatal("config still readable after delete")
	}
	resp, err := env.request(logical.ReadOperation, "token", nil)
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "inabit/config") {
		t.Fatalf("token read after delete: resp=%v err=%v (want a 400 pointing at inabit/config)", resp, err)
	}
	if at, _ := env.b.login.cachedAccess(); at != nil {
		t.Fatal("cached access token survived config delete")
	}
}

// A url-only write must not redirect the stored login token to another server: whoever may
// update config but not read it could otherwise steal it (and then kill Vault's copy).
func TestURLToAnotherOriginNeedsTheLoginToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	other, otherSrv := mockinabit.NewHTTPTest(mockinabit.Options{})
	t.Cleanup(otherSrv.Close)
	before := storedToken(t, env)
	beforeURL := env.readConfig(t)["url"]

	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"url": otherSrv.URL + "/graphql"})
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "login_token in the same request") {
		t.Fatalf("url-only write to another host: resp=%v err=%v, want a 400 naming the rule", resp, err)
	}
	if env.readConfig(t)["url"] != beforeURL || storedToken(t, env) != before {
		t.Fatal("the refused write changed the stored config")
	}
	env.readToken(t)
	if got := other.Calls(mockinabit.OpAccessToken) + other.Calls(mockinabit.OpRefresh); got != 0 {
		t.Fatalf("the other host saw %d requests", got)
	}

	// The same server on another path is fine, and so is another host with its own token.
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"url": env.srv.URL + "/v2/graphql"}); err != nil {
		t.Fatalf("path-only change: %v", err)
	}
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"url": otherSrv.URL, "login_token": other.LoginToken()}); err != nil {
		t.Fatalf("url with its login_token: %v", err)
	}
	if env.mock.Calls(mockinabit.OpAccessToken) == 0 || other.Calls(mockinabit.OpAccessToken) != 1 {
		t.Fatal("verification did not go where the token belongs")
	}
}

func TestSameOrigin(t *testing.T) {
	cases := []struct {
		a, b string
		same bool
	}{
		{"https://api.inabit.com/graphql", "https://api.inabit.com/v2", true},
		{"https://api.inabit.com/graphql", "https://API.inabit.com:443/graphql", true},
		{"https://api.inabit.com/graphql", "https://api.inabit.com:8443/graphql", false},
		{"https://api.inabit.com/graphql", "https://evil.example/graphql", false},
		{"http://127.0.0.1:8300/graphql", "https://127.0.0.1:8300/graphql", false},
	}
	for _, tc := range cases {
		if got := sameOrigin(tc.a, tc.b); got != tc.same {
			t.Errorf("sameOrigin(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.same)
		}
	}
}

// TestConfigCreateRunsExistenceCheckAndNeedsLoginToken sends what Vault sends for a first write:
// an existence check (pathConfigExists), then a create operation. Issue 8 defect 12: the test of
// a first write did not run the existence check.
func TestConfigCreateRunsExistenceCheckAndNeedsLoginToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	exists := func() bool {
		t.Helper()
		found, ok, err := env.b.HandleExistenceCheck(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "config", Storage: env.storage})
		if err != nil || !found {
			t.Fatalf("existence check: found=%v err=%v", found, err)
		}
		return ok
	}
	if exists() {
		t.Fatal("config exists before the first write")
	}
	resp, err := env.requestOK(logical.CreateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken(), "url": env.srv.URL})
	if err != nil {
		t.Fatalf("create: %v %v", resp, err)
	}
	if !exists() {
		t.Fatal("config does not exist after a create")
	}
	if storedToken(t, env) != env.mock.LoginToken() || env.mock.Calls(mockinabit.OpAccessToken) != 1 {
		t.Fatal("create did not verify and save the login token")
	}
	// A create without a login token on an empty mount must name the field.
	env2 := newTestEnv(t, mockinabit.Options{})
	resp, err = env2.request(logical.CreateOperation, "config", map[string]interface{}{"url": env2.srv.URL})
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "login_token") {
		t.Fatalf("create without login_token: %v %v", resp, err)
	}
	env.tickOK(t)
}

// A login_token sent with the wrong JSON type (an object, as a botched script or an HCL file
// would send) is a 400 that does not quote the value. (The review found ValidateStrict refusing
// it with the SDK's conversion error, which quotes the value: the token came back in the error
// and whatever logs the response.)
func TestLoginTokenOfWrongTypeIsNeverEchoedInThe400(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tok := env.mock.LoginToken()
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": map[string]interface{}{"value": tok}, "url": env.srv.URL})
	msg := ""
	if err != nil {
		msg = err.Error()
	} else if resp != nil && resp.IsError() {
		msg = resp.Error().Error()
	}
	if strings.Contains(msg, strings.SplitN(tok, ".", 3)[1]) {
		t.Fatalf("the 400 for a login_token of the wrong type quotes the token: %q", inabitapi.Redact(msg))
	}
}
