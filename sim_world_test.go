package inabit

// The simulation's world: a virtual clock and one storage shared by every node (see sim_test.go).

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// vclock is the only time the plugin and the inabit model see. It moves only forward, and only
// when the simulation or the model's latency moves it. Virtual deadlines (Vault's 90 s on a
// periodic tick, the CLI's 60 s) cancel their context when the clock passes them.
type vclock struct {
	mu        sync.Mutex
	t         time.Time
	deadlines []vdeadline
}

type vdeadline struct {
	at     time.Time
	cancel context.CancelFunc
}

func (c *vclock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *vclock) advance(d time.Duration) {
	if d <= 0 {
		return
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	var fire []context.CancelFunc
	kept := c.deadlines[:0]
	for _, dl := range c.deadlines {
		if !dl.at.After(c.t) {
			fire = append(fire, dl.cancel)
		} else {
			kept = append(kept, dl)
		}
	}
	c.deadlines = kept
	c.mu.Unlock()
	for _, f := range fire {
		f()
	}
}

// sleep is a node's wait on the virtual clock: it takes no virtual time and ends at once, with
// ctx's cause if ctx has ended. Moving the clock by d would make a seed's timeline depend on the
// backoff's jitter, which is not drawn from the seed.
func (c *vclock) sleep(ctx context.Context, _ time.Duration) error { return context.Cause(ctx) }

// withDeadline returns a context cancelled when the virtual clock passes now+d.
func (c *vclock) withDeadline(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	c.mu.Lock()
	c.deadlines = append(c.deadlines, vdeadline{at: c.t.Add(d), cancel: cancel})
	c.mu.Unlock()
	return ctx, cancel
}

// simGoroutine is the goroutine that runs the simulation. Hooks fire only on its calls: the
// plugin's background work (a shared access-token fetch) runs on other goroutines, and counting
// those would make a seed's hooks land at different moments from run to run.
var simGoroutine atomic.Uint64

func goroutineID() uint64 {
	var buf [64]byte
	f := strings.Fields(string(buf[:runtime.Stack(buf[:], false)]))
	id, _ := strconv.ParseUint(f[1], 10, 64)
	return id
}

func onSimGoroutine() bool { return goroutineID() == simGoroutine.Load() }

var (
	errSimStorage  = errors.New("injected storage failure")
	errSimStandby  = errors.New("cannot write to storage: this node is no longer active")
	errSimCanceled = errors.New("storage call with a cancelled or expired context")
	errSimGone     = errors.New("plugin process is gone")
)

// storageFault fails calls of one verb to keys with a prefix: the next n calls, or all of them.
type storageFault struct {
	verb, prefix string
	n            int // > 0: transient, that many calls left
	lasting      bool
	until        time.Time // non-zero: a lasting fault that ends at this (true) time
}

// simStore is one Vault storage shared by every node. Each node gets a storeView; writes from a
// stepped-down node fail, and every call with a done context fails, as over Vault's gRPC storage.
type simStore struct {
	clock *vclock
	mu    sync.Mutex
	data  map[string][]byte
	seq   map[string]int // insertion order, so List (and so WAL settling) is deterministic
	// refusedAt is the refused count when a key was created: a WAL entry whose rotation could not
	// write its status is told apart from one whose status the plugin never tried to write.
	refusedAt map[string]int
	nextSq    int
	ver       int // bumped on every write, so readers of the raw store can cache
	faults    []*storageFault
	quiet     bool // invariant checks read through views without faults, hooks or counting
	// calls counts the simulation goroutine's calls since the hook was armed; hook runs before
	// call number hookAt.
	calls  int
	hookAt int
	hook   func()
	// onWrite runs after a successful Put or Delete (invalidation of other nodes).
	onWrite func(from *simInstance, key string)
	stats   *simRequestStats
	note    func(format string, args ...interface{})
	// counters for the soak figures; refused counts writes that failed for reasons outside the
	// plugin (injected faults, a stepped-down or dead node)
	injected, ctxFailures, refused int
}

type simRequestStats struct {
	injectedWriteFaults int // injected failures of config writes, and writes refused to a stepped-down node
	ctxFailures         int
}

func newSimStore() *simStore {
	return &simStore{data: map[string][]byte{}, seq: map[string]int{}, refusedAt: map[string]int{}}
}

func (s *simStore) armHook(at int, fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls, s.hookAt, s.hook = 0, at, fn
}

func (s *simStore) disarm() { s.armHook(0, nil) }

func (s *simStore) setQuiet(q bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.quiet = q
}

func (s *simStore) addFault(f *storageFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

func (s *simStore) clearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// faultsActive says whether any fault is armed (a tick is "fault-free" only when none is).
func (s *simStore) faultsActive() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expireLocked()
	return len(s.faults) > 0
}

// expireLocked drops outages whose time is over.
func (s *simStore) expireLocked() {
	if s.clock == nil {
		return
	}
	now := s.clock.now()
	kept := s.faults[:0]
	for _, f := range s.faults {
		if f.until.IsZero() || now.Before(f.until) {
			kept = append(kept, f)
		}
	}
	s.faults = kept
}

// outageEnd is when the latest timed outage ends; zero if none.
func (s *simStore) outageEnd() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var end time.Time
	for _, f := range s.faults {
		if f.until.After(end) {
			end = f.until
		}
	}
	return end
}

// raw reads the store directly, for invariant checks.
func (s *simStore) raw(key string) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.data[key]
}

func (s *simStore) version() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ver
}

func (s *simStore) rawKeys(prefix string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return s.seq[keys[i]] < s.seq[keys[j]] })
	return keys
}

// enter runs the hook and decides whether a call fails. It returns nil when the call may proceed.
func (s *simStore) enter(ctx context.Context, v *storeView, verb, key string) error {
	s.mu.Lock()
	if s.quiet {
		s.mu.Unlock()
		return nil
	}
	var hook func()
	if s.hook != nil && onSimGoroutine() { // a fetch left running in the background never counts
		s.calls++
		if s.calls == s.hookAt {
			hook, s.hook = s.hook, nil
		}
	}
	s.mu.Unlock()
	if hook != nil {
		hook()
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	write := verb == "Put" || verb == "Delete"
	if ctx.Err() != nil {
		s.ctxFailures++
		if s.stats != nil {
			s.stats.ctxFailures++
		}
		s.note("storage %s %s by instance %d failed: context done", verb, key, v.inst.id)
		return fmt.Errorf("%s %s: %w: %v", verb, key, errSimCanceled, ctx.Err())
	}
	if v.inst.crashed {
		if write {
			s.refused++
		}
		if write && s.stats != nil {
			s.stats.injectedWriteFaults++
		}
		return fmt.Errorf("%s %s: %w", verb, key, errSimGone)
	}
	if write && v.inst.stepped {
		s.refused++
		if s.stats != nil {
			s.stats.injectedWriteFaults++
		}
		s.note("storage %s %s by instance %d refused: not active", verb, key, v.inst.id)
		return fmt.Errorf("%s %s: %w", verb, key, errSimStandby)
	}
	s.expireLocked()
	for i, f := range s.faults {
		if f.verb != verb || !strings.HasPrefix(key, f.prefix) {
			continue
		}
		if !f.lasting {
			f.n--
			if f.n <= 0 {
				s.faults = append(s.faults[:i], s.faults[i+1:]...)
			}
		}
		s.injected++
		if write {
			s.refused++
		}
		if write && key == "config" && s.stats != nil {
			s.stats.injectedWriteFaults++
		}
		s.note("storage %s %s by instance %d failed: injected", verb, key, v.inst.id)
		return fmt.Errorf("%s %s: %w", verb, key, errSimStorage)
	}
	return nil
}

// storeView is one node's logical.Storage.
type storeView struct {
	s    *simStore
	inst *simInstance
}

func (v *storeView) List(ctx context.Context, prefix string) ([]string, error) {
	if err := v.s.enter(ctx, v, "List", prefix); err != nil {
		return nil, err
	}
	var out []string
	seen := map[string]bool{}
	for _, k := range v.s.rawKeys(prefix) {
		rest := strings.TrimPrefix(k, prefix)
		if i := strings.Index(rest, "/"); i >= 0 {
			rest = rest[:i+1]
		}
		if !seen[rest] {
			seen[rest] = true
			out = append(out, rest)
		}
	}
	return out, nil
}

func (v *storeView) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if err := v.s.enter(ctx, v, "Get", key); err != nil {
		return nil, err
	}
	val := v.s.raw(key)
	if val == nil {
		return nil, nil
	}
	return &logical.StorageEntry{Key: key, Value: append([]byte(nil), val...)}, nil
}

func (v *storeView) Put(ctx context.Context, e *logical.StorageEntry) error {
	if err := v.s.enter(ctx, v, "Put", e.Key); err != nil {
		return err
	}
	v.s.mu.Lock()
	if _, ok := v.s.data[e.Key]; !ok {
		v.s.nextSq++
		v.s.seq[e.Key] = v.s.nextSq
		v.s.refusedAt[e.Key] = v.s.refused
	}
	v.s.data[e.Key] = append([]byte(nil), e.Value...)
	v.s.ver++
	onWrite := v.s.onWrite
	v.s.mu.Unlock()
	if onWrite != nil {
		onWrite(v.inst, e.Key)
	}
	return nil
}

func (v *storeView) Delete(ctx context.Context, key string) error {
	if err := v.s.enter(ctx, v, "Delete", key); err != nil {
		return err
	}
	v.s.mu.Lock()
	delete(v.s.data, key)
	v.s.ver++
	delete(v.s.seq, key)
	onWrite := v.s.onWrite
	v.s.mu.Unlock()
	if onWrite != nil {
		onWrite(v.inst, key)
	}
	return nil
}
