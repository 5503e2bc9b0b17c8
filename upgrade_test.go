package inabit

import (
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"

	"context"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// storedConfigFixtures are config entries exactly as released versions wrote them to storage.
// The v0.1.0 files were written by v0.1.0's own putConfig (commit 81b131d, a test added to a
// `git archive` of it), with {{LOGIN_TOKEN}} and {{URL}} in place of the token and the url, which
// the test fills in with the mock's. Durations are int64 nanoseconds (how time.Duration
// marshals), times RFC 3339, and zero times "0001-01-01T00:00:00Z" (omitempty does not drop a
// struct). Every testdata/config-*.json must have a row, so a new release's fixture is never
// skipped; new fields must come back with their defaults.
var storedConfigFixtures = map[string]struct {
	// want is the config read, minus the fields that depend on the mock's token (issued/expires).
	want map[string]interface{}
	// nextFromIssued is next_rotation_at − login_token_issued_at when the schedule follows the
	// token; zero when nextAt is fixed instead.
	nextFromIssued time.Duration
	nextAt         string
}{
	// A mount whose last two refreshes failed (rate-limited): settings off their defaults and
	// every status field set.
	"config-v0.1.0.json": {
		want: map[string]interface{}{
			"rotation_period":            int64(7200),
			"disable_automated_rotation": false,
			"access_token_min_ttl":       int64(720),
			"request_timeout":            int64(45),
			"verify_connection":          true,
			"last_rotated_at":            "2026-11-30T08:00:00Z",
			"last_rotation_error": "refreshing the login token failed (inabit rate-limited the request (HTTP 429); " +
				"retry after 30s); the login token is unchanged and still valid; retrying later",
			"rotation_failures": 2,
		},
		// The failures survive the upgrade; their backoff (10:02) is long over and a retry never
		// comes before the rotation is due, so the schedule follows the token: iat + 2h.
		nextFromIssued: 2 * time.Hour,
	},
	// What v0.1.0's first config write with default settings stored: zero status times.
	"config-v0.1.0-first-write.json": {
		want: map[string]interface{}{
			"rotation_period":            int64(360 * 3600),
			"disable_automated_rotation": false,
			"access_token_min_ttl":       int64(600),
			"request_timeout":            int64(30),
			"verify_connection":          true,
			"last_rotated_at":            "",
			"last_rotation_error":        "",
			"rotation_failures":          0,
		},
		nextFromIssued: 360 * time.Hour,
	},
}

func TestStoredConfigFromEveryReleaseLoads(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "config-*.json"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		names = append(names, filepath.Base(f))
	}
	var rows []string
	for name := range storedConfigFixtures {
		rows = append(rows, name)
	}
	sort.Strings(names)
	sort.Strings(rows)
	if !reflect.DeepEqual(names, rows) {
		t.Fatalf("fixtures in testdata %v, rows in storedConfigFixtures %v: every stored fixture needs a row", names, rows)
	}
	if len(names) == 0 {
		t.Fatal("no stored-config fixtures")
	}

	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			fx := storedConfigFixtures[name]
			env := newTestEnv(t, mockinabit.Options{})
			raw, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			stored := strings.NewReplacer("{{LOGIN_TOKEN}}", env.mock.LoginToken(), "{{URL}}", env.srv.URL).Replace(string(raw))
			// Into storage as the old version left it; the backend has read nothing yet.
			if err := env.storage.Put(context.Background(), &logical.StorageEntry{Key: configStorageKey, Value: []byte(stored)}); err != nil {
				t.Fatal(err)
			}

			got := env.readConfig(t)
			if got == nil {
				t.Fatal("the stored config did not load: config read is empty")
			}
			want := map[string]interface{}{
				"url": env.srv.URL,
				// Fields the release did not have come back with their defaults.
				"refresh_grace_period": int64(defaultRefreshGracePeriod.Seconds()),
				"login_token_lost":     false,
				"rotation_schedule":    "",
				"rotation_window":      int64(0),
				"next_rotation_reason": rotation.ReasonPeriod,
			}
			for k, v := range fx.want {
				want[k] = v
			}
			claims, err := parseClaims(env.mock.LoginToken())
			if err != nil {
				t.Fatal(err)
			}
			want["login_token_issued_at"] = formatTime(claims.IssuedAt)
			want["login_token_expires_at"] = formatTime(claims.ExpiresAt)
			if fx.nextAt != "" {
				want["next_rotation_at"] = fx.nextAt
			} else {
				want["next_rotation_at"] = formatTime(claims.IssuedAt.Add(fx.nextFromIssued))
			}
			for k, v := range want {
				if !reflect.DeepEqual(got[k], v) {
					t.Errorf("%s = %#v, want %#v", k, got[k], v)
				}
			}
			for k := range got {
				if _, ok := want[k]; !ok {
					t.Errorf("config read has %s = %#v, which this test does not check: add it to want", k, got[k])
				}
			}

			// The stored login token works: a token read gets an access token from it.
			tok := env.readToken(t)
			if !env.mock.AccessTokenValid(tok.Data["access_token"].(string)) {
				t.Fatal("token read did not return an access token the mock accepts")
			}

			// And it rotates: the status clears and the schedule follows the new token.
			env.clock.advance(time.Minute) // a new iat, so next_rotation_at must move
			old := env.mock.LoginToken()
			if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
				t.Fatalf("rotate-root on the loaded config: %v", err)
			}
			if env.mock.LoginToken() == old {
				t.Fatal("rotate-root did not refresh the login token at inabit")
			}
			after := env.readConfig(t)
			if after["last_rotation_error"] != "" || after["rotation_failures"] != 0 {
				t.Errorf("after rotate-root: last_rotation_error %q, rotation_failures %v", after["last_rotation_error"], after["rotation_failures"])
			}
			if after["next_rotation_at"] == got["next_rotation_at"] {
				t.Errorf("next_rotation_at stayed %v after a rotation", after["next_rotation_at"])
			}
			newClaims, _ := parseClaims(env.mock.LoginToken())
			period := time.Duration(got["rotation_period"].(int64)) * time.Second
			if want := formatTime(newClaims.IssuedAt.Add(period)); after["next_rotation_at"] != want {
				t.Errorf("next_rotation_at after rotate-root = %v, want %s (issued + rotation_period)", after["next_rotation_at"], want)
			}
			env.readToken(t)
		})
	}
}
