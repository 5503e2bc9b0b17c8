package inabit

// Protocol edges of reads: a suspended host, a bounded re-read, reads racing everything else.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// R5. The access-token cache counts remaining life on the monotonic clock only. Go's monotonic
// clock on Linux (CLOCK_MONOTONIC) stops while the host is suspended or the VM paused; the wall
// clock does not. After a 16-minute pause the cached 15-minute token is expired at inabit, but it
// is served as fresh with a ~14-minute lease. (Modelled with clock.step: wall moves, mono not.)
func TestCachedAccessTokenAfterHostSuspendIsNotServedExpired(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, nil)
	env.readToken(t)
	env.clock.step(16 * time.Minute) // suspend: wall clock moved on, monotonic clock did not
	resp := env.readToken(t)
	if tok := resp.Data["access_token"].(string); !env.mock.AccessTokenValid(tok) {
		t.Fatalf("served an access token inabit considers expired, lease %s, expires_at %v",
			resp.Secret.TTL, resp.Data["expires_at"])
	}
}

// flipStorage hands out, on every read of config, a config holding a different login token
// (hostile or flapping storage): each is already dead at inabit.
type flipStorage struct {
	logical.Storage
	env   *testEnv
	reads int
}

func (s *flipStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := s.Storage.Get(ctx, key)
	if err != nil || e == nil || key != configStorageKey {
		return e, err
	}
	s.reads++
	cfg := defaultConfig()
	if err := e.DecodeJSON(cfg); err != nil {
		return nil, err
	}
	cfg.LoginToken = s.env.mock.LoginToken() // a token inabit has just killed
	s.env.mock.IssueLoginToken()
	if s.reads > 50 {
		return e, nil // stop the test from running away
	}
	return logical.StorageEntryJSON(configStorageKey, cfg)
}

// R6. sharedAccessToken retries itself, unbounded, whenever storage's token differs from the one
// inabit rejected: one read may make any number of upstream calls and storage reads.
func TestUnauthenticatedRereadIsBounded(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.b.login.dropAll()
	env.mock.IssueLoginToken()
	env.mock.ResetCalls()
	fs := &flipStorage{Storage: env.storage, env: env}
	_, _ = env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: fs})
	if n := env.mock.Calls(mockinabit.OpAccessToken); n > 2 {
		t.Fatalf("one token read made %d access-token calls and %d config reads (unbounded re-read recursion)", n, fs.reads)
	}
}

// R7 (-race). Readers of both paths, rotations, ticks, invalidations and config writes at once:
// no race, no deadlock, and the stored token works at the end with no LOST said.
func TestConcurrentEverything(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"access_token_min_ttl": "15m"})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path := []string{"token", "static-token"}[i%2]
			for {
				select {
				case <-done:
					return
				default:
				}
				_, _ = env.request(logical.ReadOperation, path, nil)
				if i == 0 {
					env.b.InvalidateKey(context.Background(), configStorageKey)
				}
			}
		}(i)
	}
	for i := 0; i < 8; i++ {
		if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
			t.Errorf("rotate-root %d: %v", i, err)
		}
		env.tick(t)
		if i%3 == 0 {
			if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken()}); err != nil {
				t.Errorf("config write: %v", err)
			}
		}
	}
	close(done)
	wg.Wait()
	env.clock.advance(time.Minute)
	env.tick(t)
	stored := storedToken(t, env)
	cfg := env.readConfig(t)
	if !env.mock.LoginTokenValid(stored) || cfg["login_token_lost"] == true || cfg["last_rotation_error"] != "" {
		t.Fatalf("after the storm: stored live %v, lost %v, status %q", env.mock.LoginTokenValid(stored), cfg["login_token_lost"], cfg["last_rotation_error"])
	}
}
