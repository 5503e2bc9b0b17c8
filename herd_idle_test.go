package inabit

// The cost of an idle mount: what each minute's tick does when nothing is due.

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
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

// An idle mount's tick (configured, token proven, nothing due) reads its config once, lists its
// WAL prefix only once every walRelistAfter (besides the SDK's own WAL rollback, which lists it
// every tick, as for every plugin with WALs), and calls nothing: no write, no call to inabit,
// and no goroutine or timer left behind, however many ticks pass.
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
	if got, want := counting.counts["list"], ticks+ticks/int(walRelistAfter/time.Minute)+1; got > want {
		t.Errorf("%d storage lists in %d idle ticks, want at most %d: the SDK's one a tick, and ours once every %s", got, ticks, want, walRelistAfter)
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

// anotherNodesWAL stores a rotation WAL entry for env's stored token, as another node's refresh
// in flight would, and returns its id.
func anotherNodesWAL(t *testing.T, env *testEnv) string {
	t.Helper()
	cfg := storedConfig(t, env)
	id, err := framework.PutWAL(context.Background(), env.storage, walKindRotation,
		&rotationWAL{OldTokenSHA256: tokenHash(cfg.LoginToken), StartedAt: env.clock.now(), SettleAfter: cfg.Budget().SettleAfter()})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func (e *testEnv) sawWAL(id string) bool {
	e.b.login.mu.Lock()
	defer e.b.login.mu.Unlock()
	_, ok := e.b.login.walSeen[id]
	return ok
}

// Idle ticks trust an empty listing of the WAL prefix only as long as nothing may have written an
// entry: another node's entry is seen on the tick after its invalidation reaches this node...
func TestAnIdleTickSeesAnotherNodesWALAfterItsInvalidation(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.tickOK(t) // lists the prefix: empty
	id := anotherNodesWAL(t, env)
	env.clock.advance(time.Minute)
	env.tickOK(t)
	if env.sawWAL(id) {
		t.Fatal("setup: the idle tick listed the prefix although nothing told it to")
	}
	env.b.invalidate(context.Background(), "wal/"+id)
	env.clock.advance(time.Minute)
	env.tickOK(t)
	if !env.sawWAL(id) {
		t.Fatal("the tick after an invalidation did not see the WAL entry another node wrote")
	}
}

// ...and, with no invalidation at all (a node that missed it), within walRelistAfter; at once when
// a read has seen inabit reject the token (the full path, which settles first).
func TestAnIdleTickSeesAnUnannouncedWALWithinTheRelistBound(t *testing.T) {
	for _, rejected := range []bool{false, true} {
		env := newTestEnv(t, mockinabit.Options{})
		env.configure(t, nil)
		env.tickOK(t)
		id := anotherNodesWAL(t, env)
		if rejected {
			env.b.login.noteRejected(storedConfig(t, env).LoginToken, env.b.mono())
			env.clock.advance(time.Minute)
			env.tickOK(t)
			if !env.sawWAL(id) {
				t.Fatal("a tick with a rejection to confirm skipped the WAL listing")
			}
			continue
		}
		for i := 0; i <= int(walRelistAfter/time.Minute) && !env.sawWAL(id); i++ {
			env.clock.advance(time.Minute)
			env.tickOK(t)
		}
		if !env.sawWAL(id) {
			t.Fatalf("no tick saw an unannounced WAL entry within %s", walRelistAfter)
		}
	}
}
