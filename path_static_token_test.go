package inabit

// Tests of path_static_token.go: no lease, and a ttl after which a re-read gets a fresh token.

import (
	"bytes"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// frozenClock stands still until a test moves it, so that ttl arithmetic can be checked to the
// second; the plugin and the mock share it.
type frozenClock struct {
	mu    sync.Mutex
	t     time.Time
	start time.Time
}

// mono is the time moved since the clock was made: a monotonic clock that only advance moves.
func (c *frozenClock) mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t.Sub(c.start)
}

func (c *frozenClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *frozenClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// newFrozenEnv is newTestEnv on a frozen clock, configured with access_token_min_ttl = minTTL.
func newFrozenEnv(t *testing.T, accessTTL time.Duration, minTTL string) (*testEnv, *frozenClock) {
	t.Helper()
	start := time.Now().Truncate(time.Second)
	clock := &frozenClock{t: start, start: start}
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: accessTTL, Now: clock.now})
	env.b.now = clock.now
	env.b.mono = clock.mono
	env.configure(t, map[string]interface{}{"verify_connection": false, "access_token_min_ttl": minTTL})
	return env, clock
}

// staticTTL reads ttl as the int64 the path promises.
func staticTTLOf(t testing.TB, resp *logical.Response) time.Duration {
	t.Helper()
	ttl, ok := resp.Data["ttl"].(int64)
	if !ok {
		t.Fatalf("ttl is %T (%v), want int64", resp.Data["ttl"], resp.Data["ttl"])
	}
	return time.Duration(ttl) * time.Second
}

func TestStaticTokenReadHasNoLease(t *testing.T) {
	env, clock := newFrozenEnv(t, 15*time.Minute, "10m")
	resp := env.readStatic(t)

	if resp.Secret != nil {
		t.Fatalf("static-token returned a lease: %#v", resp.Secret)
	}
	tok, _ := resp.Data["access_token"].(string)
	if !env.mock.AccessTokenValid(tok) {
		t.Fatal("access_token is not a valid mock access token")
	}
	if resp.Data["token_type"] != "Bearer" {
		t.Fatalf("token_type = %v", resp.Data["token_type"])
	}
	claims, _ := parseClaims(tok)
	if resp.Data["expires_at"] != claims.ExpiresAt.Format(time.RFC3339) {
		t.Fatalf("expires_at = %v, want %v", resp.Data["expires_at"], claims.ExpiresAt)
	}
	if !claims.ExpiresAt.Equal(clock.now().Add(15 * time.Minute)) {
		t.Fatalf("test setup: token expires at %s, want now+15m", claims.ExpiresAt)
	}
	// 15 min token, 10 min min TTL: served for 5 more minutes.
	if ttl := staticTTLOf(t, resp); ttl != 5*time.Minute {
		t.Fatalf("ttl = %s, want 5m0s", ttl)
	}
	if rp, ok := resp.Data["rotation_period"].(int64); !ok || rp != 900 {
		t.Fatalf("rotation_period = %T %v, want int64 900", resp.Data["rotation_period"], resp.Data["rotation_period"])
	}
	if len(resp.Data) != 6 {
		t.Fatalf("data has %d fields, want 6: %v", len(resp.Data), keysOf(resp.Data))
	}
	if len(resp.Warnings) != 0 {
		t.Fatalf("healthy read carried warnings: %v", resp.Warnings)
	}

	// What Vault Agent sees after the JSON hops: consul-template asserts json.Number and Int64().
	raw, err := json.Marshal(resp.Data)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var data map[string]interface{}
	if err := dec.Decode(&data); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ttl", "rotation_period"} {
		n, ok := data[k].(json.Number)
		if !ok {
			t.Fatalf("%s decodes as %T, want json.Number", k, data[k])
		}
		if _, err := n.Int64(); err != nil {
			t.Fatalf("%s = %s is not an integer: %v", k, n, err)
		}
	}
}

func TestStaticTTL(t *testing.T) {
	cases := []struct {
		name              string
		life, age, minTTL time.Duration
		want              time.Duration
	}{
		{"fresh 15m token, 10m min", 15 * time.Minute, 0, 10 * time.Minute, 5 * time.Minute},
		{"fetch took 300ms: round up", 15 * time.Minute, 300 * time.Millisecond, 10 * time.Minute, 5 * time.Minute},
		{"fetch took 10ms: round up", 15 * time.Minute, 10 * time.Millisecond, 10 * time.Minute, 5 * time.Minute},
		{"cached 4m", 15 * time.Minute, 4 * time.Minute, 10 * time.Minute, time.Minute},
		{"cached 3m59.2s: round up", 15 * time.Minute, 3*time.Minute + 59200*time.Millisecond, 10 * time.Minute, 61 * time.Second},
		{"last served instant", 15 * time.Minute, 5 * time.Minute, 10 * time.Minute, time.Second},
		{"under a second left in the cache", 15 * time.Minute, 5*time.Minute - 400*time.Millisecond, 10 * time.Minute, time.Second},
		{"life one second over min", 601 * time.Second, 0, 10 * time.Minute, time.Second},
		{"life = min (mint per read): half", 15 * time.Minute, 0, 15 * time.Minute, 450 * time.Second},
		{"life = min, fetch took 300ms: half, same branch", 15 * time.Minute, 300 * time.Millisecond, 15 * time.Minute, 449 * time.Second},
		{"life shorter than min: half", 3 * time.Minute, 0, 5 * time.Minute, 90 * time.Second},
		{"almost dead never zero", 3 * time.Second, 2500 * time.Millisecond, 2 * time.Minute, time.Second},
		{"expired never zero", 3 * time.Minute, 4 * time.Minute, 2 * time.Minute, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			const nowMono = time.Hour
			base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			a := &accessToken{fetchedAt: base, fetchedMono: nowMono - tc.age, life: tc.life}
			if got := a.staticTTL(nowMono, base.Add(tc.age), tc.minTTL); got != tc.want {
				t.Fatalf("staticTTL = %s, want %s", got, tc.want)
			}
		})
	}
}

// A reader that comes back ttl seconds later still gets the same token; one that comes back
// ttl + 1 seconds later (what Agent does) gets a fresh one with at least access_token_min_ttl
// left, while the one it held is still valid. Over several token lifetimes.
func TestStaticTokenTTLPlusOne(t *testing.T) {
	env, clock := newFrozenEnv(t, 15*time.Minute, "10m")
	const minTTL = 10 * time.Minute

	resp := env.readStatic(t)
	for cycle := 1; cycle <= 4; cycle++ {
		held := resp.Data["access_token"].(string)
		ttl := staticTTLOf(t, resp)

		clock.advance(ttl)
		same := env.readStatic(t)
		if same.Data["access_token"] != held {
			t.Fatalf("cycle %d: a different token after exactly ttl (%s); ttl was too long", cycle, ttl)
		}
		if got := staticTTLOf(t, same); got != time.Second {
			t.Fatalf("cycle %d: at the last instant the token is served, ttl = %s, want 1s", cycle, got)
		}

		clock.advance(time.Second)
		if !env.mock.AccessTokenValid(held) {
			t.Fatalf("cycle %d: the held token expired before the reader came back", cycle)
		}
		resp = env.readStatic(t)
		fresh := resp.Data["access_token"].(string)
		if fresh == held {
			t.Fatalf("cycle %d: the same token at ttl+1 (%s): the reader would not see the new one until much later", cycle, ttl+time.Second)
		}
		exp, err := time.Parse(time.RFC3339, resp.Data["expires_at"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if left := exp.Sub(clock.now()); left < minTTL {
			t.Fatalf("cycle %d: fresh token has %s left, want at least %s", cycle, left, minTTL)
		}
		if got, want := env.mock.Calls(mockinabit.OpAccessToken), cycle+1; got != want {
			t.Fatalf("cycle %d: %d upstream calls, want %d (one per token)", cycle, got, want)
		}
	}
}

// Tokens that live no longer than access_token_min_ttl are never cached: each read mints one, and
// ttl is half of what is left, so a reader re-reads long before its token dies.
func TestStaticTokenShortLivedTokens(t *testing.T) {
	for _, tc := range []struct {
		name      string
		accessTTL time.Duration
		minTTL    string
		wantTTL   time.Duration
	}{
		{"life shorter than min", 3 * time.Minute, "5m", 90 * time.Second},
		{"life equal to min", 15 * time.Minute, "15m", 450 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, clock := newFrozenEnv(t, tc.accessTTL, tc.minTTL)
			resp := env.readStatic(t)
			for i := 0; i < 3; i++ {
				ttl := staticTTLOf(t, resp)
				if ttl != tc.wantTTL {
					t.Fatalf("ttl = %s, want %s", ttl, tc.wantTTL)
				}
				if rp := resp.Data["rotation_period"].(int64); rp != int64(tc.accessTTL/time.Second) {
					t.Fatalf("rotation_period = %d, want %d", rp, int64(tc.accessTTL/time.Second))
				}
				held := resp.Data["access_token"].(string)
				clock.advance(ttl + time.Second)
				if !env.mock.AccessTokenValid(held) {
					t.Fatal("the held token expired before the reader came back at ttl+1")
				}
				resp = env.readStatic(t)
				if resp.Data["access_token"] == held {
					t.Fatal("an uncacheable token was handed out twice")
				}
			}
		})
	}
	// On a moving clock the answer must not depend on how long the fetch took.
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, map[string]interface{}{"verify_connection": false, "access_token_min_ttl": "15m"})
	for i := 0; i < 5; i++ {
		if ttl := staticTTLOf(t, env.readStatic(t)); ttl < 448*time.Second || ttl > 450*time.Second {
			t.Fatalf("min_ttl = lifetime on the real clock: ttl = %s, want about 450s", ttl)
		}
	}
}
