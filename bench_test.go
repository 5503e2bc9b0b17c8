package inabit

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// BenchmarkTokenReadCached is the hot path: a token read served from the shared cache.
func BenchmarkTokenReadCached(b *testing.B) {
	env := newTestEnv(b, mockinabit.Options{})
	env.configure(b, map[string]interface{}{"verify_connection": false})
	env.readToken(b)
	req := &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage}
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

// BenchmarkTokenReadCold mints a fresh token per read (access_token_min_ttl = lifetime): the
// cost of one upstream GraphQL round trip to a loopback mock, parsing included.
func BenchmarkTokenReadCold(b *testing.B) {
	env := newTestEnv(b, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(b, map[string]interface{}{"verify_connection": false, "access_token_min_ttl": "15m"})
	req := &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := env.b.HandleRequest(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNoGoroutineLeakOver100kReads guards what the benchmarks cannot see: goroutines left
// behind by the singleflight and upstream paths.
func TestNoGoroutineLeakOver100kReads(t *testing.T) {
	if testing.Short() {
		t.Skip("100k reads")
	}
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	env.readToken(t)
	before := runtime.NumGoroutine()
	req := &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage}
	for i := 0; i < 100_000; i++ {
		if i%10_000 == 0 {
			env.clock.advance(6 * time.Minute) // force an upstream refresh of the cache now and then
		}
		if _, err := env.b.HandleRequest(context.Background(), req); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(100 * time.Millisecond)
	if after := runtime.NumGoroutine(); after > before+5 {
		t.Fatalf("goroutines grew from %d to %d over 100k reads", before, after)
	}
}
