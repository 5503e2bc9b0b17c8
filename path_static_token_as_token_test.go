package inabit

// Tests of path_static_token.go against token: one shared cache, the same errors and warnings.

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// token and static-token are two views of one cache.
func TestStaticTokenSharesCacheWithToken(t *testing.T) {
	for _, order := range [][]string{{"token", "static-token"}, {"static-token", "token"}} {
		t.Run(strings.Join(order, " then "), func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"verify_connection": false})
			var tokens []interface{}
			for i := 0; i < 3; i++ {
				for _, path := range order {
					resp, err := env.requestOK(logical.ReadOperation, path, nil)
					if err != nil {
						t.Fatal(err)
					}
					tokens = append(tokens, resp.Data["access_token"])
				}
			}
			for _, tok := range tokens {
				if tok != tokens[0] {
					t.Fatal("token and static-token returned different access tokens from one cache")
				}
			}
			if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
				t.Fatalf("%d upstream calls, want 1", got)
			}
		})
	}
}

func TestConcurrentStaticReadsShareOneUpstreamCall(t *testing.T) {
	for _, mixed := range []bool{false, true} {
		name := "static-token only"
		if mixed {
			name = "static-token and token mixed"
		}
		t.Run(name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"verify_connection": false})
			env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 300 * time.Millisecond, Times: 1})

			const readers = 1000
			var wg sync.WaitGroup
			tokens := make([]string, readers)
			errs := make([]error, readers)
			start := make(chan struct{})
			for i := 0; i < readers; i++ {
				path := "static-token"
				if mixed && i%2 == 1 {
					path = "token"
				}
				wg.Add(1)
				go func(i int) {
					defer wg.Done()
					<-start
					resp, err := env.requestOK(logical.ReadOperation, path, nil)
					errs[i] = err
					if resp != nil && resp.Data != nil {
						tokens[i], _ = resp.Data["access_token"].(string)
					}
				}(i)
			}
			close(start)
			wg.Wait()
			for i, err := range errs {
				if err != nil {
					t.Fatalf("reader %d failed: %v", i, err)
				}
				if tokens[i] != tokens[0] {
					t.Fatalf("reader %d got a different token", i)
				}
			}
			if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
				t.Fatalf("%d concurrent readers made %d upstream calls, want 1", readers, got)
			}
		})
	}
}

// errorOf is what a reader of path sees when it fails: the coded error, or the error response.
func errorOf(t *testing.T, env *testEnv, ctx context.Context, path string) (int, string) {
	t.Helper()
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: path, Storage: env.storage})
	switch {
	case err != nil:
		if coded, ok := err.(logical.HTTPCodedError); ok {
			return coded.Code(), coded.Error()
		}
		return 500, err.Error()
	case resp.IsError():
		return http.StatusBadRequest, resp.Error().Error()
	default:
		t.Fatalf("%s read succeeded, want a failure", path)
		return 0, ""
	}
}

func TestStaticTokenErrorsAreToken(t *testing.T) {
	faults := []struct {
		name  string
		fault mockinabit.Fault
	}{
		{"401 page", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 401, ContentType: "text/html", Body: "<html><title>Unauthorized</title></html>"}},
		{"401 from the API", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 401, ContentType: "application/json", Body: `{"message":"expired"}`}},
		{"graphql unauthenticated", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "jwt expired"}},
		{"graphql generic", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "INTERNAL", Message: "boom"}},
		{"403", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, Body: "<html><title>Forbidden</title></html>"}},
		{"500", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 500, Body: "oops"}},
		{"429 long retry-after", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "120"}},
		{"garbage", mockinabit.Fault{Kind: mockinabit.FaultGarbage}},
	}
	for _, tc := range faults {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"verify_connection": false, "request_timeout": 1})
			env.mock.InjectFault(mockinabit.OpAccessToken, tc.fault)
			code, msg := errorOf(t, env, context.Background(), "token")
			sCode, sMsg := errorOf(t, env, context.Background(), "static-token")
			if code != sCode || msg != sMsg {
				t.Fatalf("token: %d %q\nstatic-token: %d %q", code, msg, sCode, sMsg)
			}
			env.mock.ClearFaults()
			env.readStatic(t)
		})
	}
	t.Run("not configured", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		code, msg := errorOf(t, env, context.Background(), "token")
		sCode, sMsg := errorOf(t, env, context.Background(), "static-token")
		if code != sCode || msg != sMsg || !strings.Contains(msg, "write the API user's login token") {
			t.Fatalf("token: %d %q\nstatic-token: %d %q", code, msg, sCode, sMsg)
		}
	})
	t.Run("reader hangs up", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		env.configure(t, map[string]interface{}{"verify_connection": false})
		env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 300 * time.Millisecond})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		code, msg := errorOf(t, env, ctx, "token")
		sCode, sMsg := errorOf(t, env, ctx, "static-token")
		if code != sCode || msg != sMsg || code != http.StatusServiceUnavailable {
			t.Fatalf("token: %d %q\nstatic-token: %d %q", code, msg, sCode, sMsg)
		}
		env.mock.ClearFaults()
		env.mock.WaitIdle(5 * time.Second)
	})
	t.Run("login token lost", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		env.configure(t, nil)
		env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDropAfterApply, Times: 1})
		if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
			t.Fatal("test setup: the rotation should not have finished")
		}
		env.mock.WaitIdle(5 * time.Second)
		env.clock.advance(11 * time.Minute)
		env.tick(t)
		if lost, _ := env.readConfig(t)["login_token_lost"].(bool); !lost {
			t.Fatal("test setup: the login token should be LOST")
		}
		env.mock.ResetCalls()
		code, msg := errorOf(t, env, context.Background(), "token")
		sCode, sMsg := errorOf(t, env, context.Background(), "static-token")
		if code != sCode || msg != sMsg || !strings.Contains(msg, "LOGIN TOKEN LOST") {
			t.Fatalf("token: %d %q\nstatic-token: %d %q", code, msg, sCode, sMsg)
		}
		if got := env.mock.Calls(mockinabit.OpAccessToken); got != 0 {
			t.Fatalf("a read of a LOST mount called inabit %d times", got)
		}
	})
}

func TestStaticTokenWarningsAreToken(t *testing.T) {
	t.Run("expires within 72h", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 48 * time.Hour})
		env.configure(t, map[string]interface{}{"rotation_period": "24h"})
		tw, sw := env.readToken(t).Warnings, env.readStatic(t).Warnings
		if len(sw) != 1 || strings.Join(tw, "\n") != strings.Join(sw, "\n") {
			t.Fatalf("token warnings %q, static-token warnings %q", tw, sw)
		}
	})
	t.Run("rotation failing", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		env.configure(t, nil)
		env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Times: 1})
		if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
			t.Fatal("rotation against a 503 reported success")
		}
		tw, sw := env.readToken(t).Warnings, env.readStatic(t).Warnings
		if len(sw) != 1 || !strings.Contains(sw[0], "rotation is failing") || strings.Join(tw, "\n") != strings.Join(sw, "\n") {
			t.Fatalf("token warnings %q, static-token warnings %q", tw, sw)
		}
	})
}

// BenchmarkStaticTokenReadCached is static-token's hot path, next to BenchmarkTokenReadCached.
func BenchmarkStaticTokenReadCached(b *testing.B) {
	env := newTestEnv(b, mockinabit.Options{})
	env.configure(b, map[string]interface{}{"verify_connection": false})
	env.readStatic(b)
	req := &logical.Request{Operation: logical.ReadOperation, Path: "static-token", Storage: env.storage}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := env.b.HandleRequest(ctx, req); err != nil {
				b.Error(err)
			}
		}
	})
	b.StopTimer()
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
		b.Fatalf("cached reads made %d upstream calls, want 1", got)
	}
}
