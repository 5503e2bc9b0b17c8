package inabit

import (
	"bytes"
	"context"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// syncBuffer collects trace logs from many goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// faultyStorage is the SDK's in-memory storage with puts failing for chosen key prefixes.
type faultyStorage struct {
	logical.Storage
	mu       sync.Mutex
	failPuts map[string]bool
	// putsLeft lets that many more puts under a prefix succeed before they fail.
	putsLeft map[string]int
	// refuseNext refuses that many next puts under a prefix, then lets them succeed again.
	refuseNext map[string]int
}

func (f *faultyStorage) failPutsTo(prefix string, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failPuts[prefix] = fail
	delete(f.putsLeft, prefix)
}

// failPutsAfter lets n more puts under prefix succeed, then fails every later one: the rotation
// writes its in-flight status before the refresh, and a test of a failed save must let it.
func (f *faultyStorage) failPutsAfter(prefix string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failPuts[prefix] = true
	if f.putsLeft == nil {
		f.putsLeft = map[string]int{}
	}
	f.putsLeft[prefix] = n
}

// refuseNextPuts refuses the next n puts under prefix and lets every later one succeed: storage
// that fails once and recovers.
func (f *faultyStorage) refuseNextPuts(prefix string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuseNext == nil {
		f.refuseNext = map[string]int{}
	}
	f.refuseNext[prefix] = n
}

func (f *faultyStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	f.mu.Lock()
	for prefix, n := range f.refuseNext {
		if n > 0 && strings.HasPrefix(e.Key, prefix) {
			f.refuseNext[prefix] = n - 1
			f.mu.Unlock()
			return errInjectedStorage
		}
	}
	for prefix, fail := range f.failPuts {
		if fail && strings.HasPrefix(e.Key, prefix) {
			if f.putsLeft[prefix] > 0 {
				f.putsLeft[prefix]--
				continue
			}
			f.mu.Unlock()
			return errInjectedStorage
		}
	}
	f.mu.Unlock()
	return f.Storage.Put(ctx, e)
}

type storageError string

func (e storageError) Error() string { return string(e) }

const errInjectedStorage = storageError("injected storage failure")

type testEnv struct {
	b       *backend
	storage *faultyStorage
	mock    *mockinabit.Server
	srv     *httptest.Server
	events  *logical.MockEventSender
	logs    *syncBuffer
	clock   *testClock
}

// testClock is real time moved on by advance (time passing: both clocks) and step (the wall clock
// alone jumping, as NTP or an operator does).
type testClock struct {
	mu     sync.Mutex
	base   time.Time
	offset time.Duration
	step_  time.Duration
}

func newTestClock() *testClock { return &testClock{base: time.Now()} }

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset + c.step_)
}

// mono is the backend's monotonic clock: it never steps.
func (c *testClock) mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Since(c.base) + c.offset
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.offset += d
}

// sleep waits on real time, which this clock runs on.
func (c *testClock) sleep(ctx context.Context, d time.Duration) error { return sleepCtx(ctx, d) }

// step moves the wall clock alone.
func (c *testClock) step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.step_ += d
}

func newTestEnv(t testing.TB, opts mockinabit.Options) *testEnv {
	t.Helper()
	clock := newTestClock()
	if opts.Now == nil {
		opts.Now = clock.now
	}
	mock, srv := mockinabit.NewHTTPTest(opts)
	t.Cleanup(srv.Close)

	logs := &syncBuffer{}
	conf := logical.TestBackendConfig()
	conf.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: logs})
	storage := &faultyStorage{Storage: &logical.InmemStorage{}, failPuts: map[string]bool{}}
	conf.StorageView = storage
	events := logical.NewMockEventSender()
	conf.EventsSender = events

	raw, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	b := raw.(*backend)
	b.now, b.mono, b.sleep = clock.now, clock.mono, clock.sleep
	env := &testEnv{b: b, storage: storage, mock: mock, srv: srv, events: events, logs: logs, clock: clock}
	t.Cleanup(func() {
		b.Cleanup(context.Background())
		env.assertNoTokenLeak(t)
	})
	return env
}

func (e *testEnv) request(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	return e.b.HandleRequest(context.Background(), &logical.Request{
		Operation: op,
		Path:      path,
		Data:      data,
		Storage:   e.storage,
	})
}

// requestOK is request with an error response (a 400) folded into the error, for callers that
// only need to know whether the operation succeeded.
func (e *testEnv) requestOK(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
	resp, err := e.request(op, path, data)
	if err == nil && resp.IsError() {
		err = resp.Error()
	}
	return resp, err
}

// configure writes a working config pointing at the mock and fails the test otherwise.
func (e *testEnv) configure(t testing.TB, extra map[string]interface{}) {
	t.Helper()
	data := map[string]interface{}{"login_token": e.mock.LoginToken(), "url": e.srv.URL}
	for k, v := range extra {
		data[k] = v
	}
	resp, err := e.request(logical.UpdateOperation, "config", data)
	if err != nil || resp.IsError() {
		t.Fatalf("config write: resp=%#v err=%v", resp, err)
	}
}

func (e *testEnv) readConfig(t testing.TB) map[string]interface{} {
	t.Helper()
	resp, err := e.request(logical.ReadOperation, "config", nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil {
		return nil
	}
	return resp.Data
}

func (e *testEnv) readToken(t testing.TB) *logical.Response {
	t.Helper()
	resp, err := e.request(logical.ReadOperation, "token", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("token read: resp=%#v err=%v", resp, err)
	}
	return resp
}

func (e *testEnv) tick(t testing.TB) {
	t.Helper()
	if _, err := e.request(logical.RollbackOperation, "", nil); err != nil {
		t.Logf("rollback tick: %v", err)
	}
}

func (e *testEnv) eventTypes() []string {
	e.events.Lock()
	defer e.events.Unlock()
	var out []string
	for _, ev := range e.events.Events {
		out = append(out, string(ev.Type))
	}
	return out
}

// assertNoTokenLeak checks that no login or access token the mock ever handed out reached a log
// line or an event. Every JWT minted here starts with the same header, so its presence is enough.
func (e *testEnv) assertNoTokenLeak(t testing.TB) {
	t.Helper()
	header := strings.SplitN(e.mock.LoginToken(), ".", 2)[0]
	if strings.Contains(e.logs.String(), header) {
		t.Errorf("a token appeared in the trace logs:\n%s", e.logs.String())
	}
	e.events.Lock()
	defer e.events.Unlock()
	for _, ev := range e.events.Events {
		if strings.Contains(ev.Event.String(), header) {
			t.Errorf("a token appeared in event %s", ev.Type)
		}
	}
}

func TestFactoryReportsVersionAndPaths(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	// A test binary has neither a stamp nor a module version ("(devel)").
	if got := env.b.PluginVersion().Version; got != pluginVersion() || got != devVersion {
		t.Fatalf("running version = %q, want %q (pluginVersion %q)", got, devVersion, pluginVersion())
	}
	if got := env.b.Type(); got != logical.TypeLogical {
		t.Fatalf("backend type = %v", got)
	}
	if sw := env.b.SpecialPaths().SealWrapStorage; len(sw) != 1 || sw[0] != configStorageKey {
		t.Fatalf("seal-wrapped paths = %v", sw)
	}
	for _, p := range env.b.Paths {
		if p.HelpSynopsis == "" || p.HelpDescription == "" || p.DisplayAttrs == nil {
			t.Errorf("path %q lacks help or display attributes", p.Pattern)
		}
		for name, f := range p.Fields {
			if f.Description == "" || f.DisplayAttrs == nil {
				t.Errorf("field %s/%s lacks description or display attributes", p.Pattern, name)
			}
		}
	}
}

// Many mounts, one process (issue 19): every mount's paths share their schemas and display
// attributes (read-only to the framework), and keep their own Path values, whose callbacks are
// bound to the mount and whose patterns the framework anchors in place.
func TestMountsShareSchemasNotPaths(t *testing.T) {
	a, b := newTestEnv(t, mockinabit.Options{}), newTestEnv(t, mockinabit.Options{})
	if len(a.b.Paths) != len(b.b.Paths) {
		t.Fatal("mounts differ in paths")
	}
	for i, pa := range a.b.Paths {
		pb := b.b.Paths[i]
		if pa == pb {
			t.Fatalf("path %q: one *framework.Path for two mounts", pa.Pattern)
		}
		if pa.DisplayAttrs != pb.DisplayAttrs || reflect.ValueOf(pa.Fields).UnsafePointer() != reflect.ValueOf(pb.Fields).UnsafePointer() {
			t.Errorf("path %q: each mount builds its own schema", pa.Pattern)
		}
	}
	if reflect.ValueOf(a.b.Secrets[0].Fields).UnsafePointer() != reflect.ValueOf(b.b.Secrets[0].Fields).UnsafePointer() {
		t.Error("each mount builds its own secret schema")
	}
	// Each mount still routes to itself: a's config write is not b's.
	a.configure(t, nil)
	if resp, err := b.request(logical.ReadOperation, "config", nil); err != nil || resp != nil && !resp.IsError() && resp.Data["url"] != nil {
		t.Fatalf("b sees a's config: %v %v", resp, err)
	}
}

func TestInvalidateDropsCachedConfigAndToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.readToken(t)

	// Another node rotated: storage holds a token this node has never seen.
	cfg, err := readConfig(context.Background(), env.storage)
	if err != nil {
		t.Fatal(err)
	}
	cfg.LoginToken = env.mock.IssueLoginToken()
	if err := putConfig(context.Background(), env.storage, cfg); err != nil {
		t.Fatal(err)
	}
	env.b.InvalidateKey(context.Background(), configStorageKey)

	env.mock.ResetCalls()
	env.readToken(t)
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
		t.Fatalf("after invalidation, token read made %d upstream calls, want 1 (fresh fetch with the new login token)", got)
	}
}

func TestInvalidateKeepsUnsavedRotatedToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails
	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err != nil || len(resp.Warnings) == 0 {
		t.Fatalf("rotate with failing storage: resp=%#v err=%v", resp, err)
	}
	env.b.InvalidateKey(context.Background(), configStorageKey)
	env.mock.ResetCalls()
	env.readToken(t) // must still use the in-memory rotated token, which is the only live one
}

// Clean (the plugin stops) waits for a rotation in flight, whose new token reaches storage before
// the storage goes (issue 8 defect 9).
func TestCleanWaitsForRotationInFlightToSaveItsToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: time.Second, Times: 1})
	vs := &vaultStorage{Storage: env.storage}

	done := make(chan error, 1)
	go func() {
		_, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vs})
		done <- err
	}()
	waitFor(t, "the refresh to reach inabit", func() bool { return env.mock.Calls(mockinabit.OpRefresh) == 1 })
	env.b.Cleanup(context.Background())
	vs.close() // the plugin is stopped: its storage is gone
	t.Logf("rotate-root: %v", <-done)

	if got := storedToken(t, env); got != env.mock.LoginToken() {
		loud := strings.Contains(env.logs.String(), "never saved to storage")
		t.Fatalf("Clean returned during a rotation in flight and the new token never reached storage (loud log line: %v)", loud)
	}
}

// WAL entries are local storage: they are not replicated to other clusters (issue 8 defect 10).
func TestWALPrefixIsLocalStorage(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	for _, p := range env.b.SpecialPaths().LocalStorage {
		if p == framework.WALPrefix {
			return
		}
	}
	t.Fatalf("LocalStorage = %q, want it to hold %q", env.b.SpecialPaths().LocalStorage, framework.WALPrefix)
}
