package inabit

// The cost of an idle mount: what each minute's tick does when nothing is due.

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// countingStorage counts storage operations by kind.
type countingStorage struct {
	logical.Storage
	mu     sync.Mutex
	counts map[string]int
}

func (c *countingStorage) count(op string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[op]++
}

func (c *countingStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	c.count("get")
	return c.Storage.Get(ctx, key)
}

func (c *countingStorage) List(ctx context.Context, prefix string) ([]string, error) {
	c.count("list")
	return c.Storage.List(ctx, prefix)
}

func (c *countingStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	c.count("put")
	return c.Storage.Put(ctx, e)
}

func (c *countingStorage) Delete(ctx context.Context, key string) error {
	c.count("delete")
	return c.Storage.Delete(ctx, key)
}

// An idle mount's tick (configured, token proven, nothing due) reads its config once and lists
// its WAL prefix twice (once to settle unfinished rotations, once in the SDK's own WAL rollback,
// which every plugin with WALs pays), and calls nothing: no write, no call to inabit, and no
// goroutine or timer left behind, however many ticks pass.
func TestAnIdleMountsTickReadsConfigOnceAndLeavesNothingBehind(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.readToken(t)
	counting := &countingStorage{Storage: env.storage, counts: map[string]int{}}
	calls := env.mock.Calls(mockinabit.OpAccessToken) + env.mock.Calls(mockinabit.OpRefresh)
	tick := func() {
		if _, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: counting}); err != nil {
			t.Fatalf("tick: %v", err)
		}
	}
	tick() // the first tick may settle state left by the config write
	runtime.GC()
	goroutines := runtime.NumGoroutine()
	counting.counts = map[string]int{}
	const ticks = 100
	for i := 0; i < ticks; i++ {
		env.clock.advance(time.Minute)
		tick()
	}
	time.Sleep(50 * time.Millisecond) // anything a tick started would be running now
	runtime.GC()
	t.Logf("%d idle ticks: storage %v, goroutines %d -> %d", ticks, counting.counts, goroutines, runtime.NumGoroutine())
	if got := counting.counts["get"]; got > ticks {
		t.Errorf("%d storage reads in %d idle ticks, want at most one a tick", got, ticks)
	}
	if got := counting.counts["list"]; got > 2*ticks {
		t.Errorf("%d storage lists in %d idle ticks, want at most two a tick", got, ticks)
	}
	if counting.counts["put"] != 0 || counting.counts["delete"] != 0 {
		t.Errorf("idle ticks wrote to storage: %v", counting.counts)
	}
	if n := env.mock.Calls(mockinabit.OpAccessToken) + env.mock.Calls(mockinabit.OpRefresh) - calls; n != 0 {
		t.Errorf("%d calls to inabit in %d idle ticks", n, ticks)
	}
	if g := runtime.NumGoroutine(); g > goroutines {
		t.Errorf("goroutines grew over %d idle ticks: %d -> %d", ticks, goroutines, g)
	}
}
