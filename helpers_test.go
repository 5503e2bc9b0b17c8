package inabit

// Helpers shared by the root package's tests: a storage that fails like Vault's gRPC storage,
// transports that act as a proxy or a slow inabit on the way to the mock, another node (or a
// restarted plugin) on the same storage, and readers of the stored status, events and WAL.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// pastGrace is past the default refresh_grace_period (10m): an ambiguous refresh is settled
// only after it.
const pastGrace = 11 * time.Minute

// vaultStorage behaves like the storage real Vault hands a plugin over gRPC: a call made with a
// context that is already cancelled or past its deadline fails, and after the plugin is stopped
// every call fails. onConfigPut runs once, just before the first Put of the config entry.
type vaultStorage struct {
	logical.Storage
	mu          sync.Mutex
	onConfigPut func()
	closed      bool
}

func (s *vaultStorage) check(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("rpc error: code = Canceled desc = %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("rpc error: code = Unavailable desc = plugin storage is gone (plugin stopped)")
	}
	return nil
}

func (s *vaultStorage) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

func (s *vaultStorage) List(ctx context.Context, prefix string) ([]string, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.Storage.List(ctx, prefix)
}

func (s *vaultStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	return s.Storage.Get(ctx, key)
}

func (s *vaultStorage) Put(ctx context.Context, e *logical.StorageEntry) error {
	if e.Key == configStorageKey {
		s.mu.Lock()
		hook := s.onConfigPut
		s.onConfigPut = nil
		s.mu.Unlock()
		if hook != nil {
			hook()
		}
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.Storage.Put(ctx, e)
}

func (s *vaultStorage) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	return s.Storage.Delete(ctx, key)
}

// tickOK is tick that fails the test when Vault's periodic call returns an error.
func (e *testEnv) tickOK(t testing.TB) {
	t.Helper()
	resp, err := e.request(logical.RollbackOperation, "", nil)
	if err == nil && resp != nil && resp.IsError() {
		err = resp.Error()
	}
	if err != nil {
		t.Fatalf("rollback tick: %v", err)
	}
}

// newNode builds another backend with Factory on the env's storage, logs and events: a
// restarted plugin, or another node.
func newNode(t testing.TB, e *testEnv, mutate func(*logical.BackendConfig)) *backend {
	t.Helper()
	conf := logical.TestBackendConfig()
	conf.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: e.logs})
	conf.StorageView = e.storage
	conf.EventsSender = e.events
	if mutate != nil {
		mutate(conf)
	}
	raw, err := Factory(context.Background(), conf)
	if err != nil {
		t.Fatal(err)
	}
	b := raw.(*backend)
	b.now, b.mono, b.sleep = e.clock.now, e.clock.mono, e.clock.sleep
	t.Cleanup(func() { b.Cleanup(context.Background()) })
	return b
}

func rotationStatus(t testing.TB, env *testEnv) string {
	t.Helper()
	s, _ := env.readConfig(t)["last_rotation_error"].(string)
	return s
}

func storedConfig(t testing.TB, env *testEnv) *inabitConfig {
	t.Helper()
	cfg, err := readConfig(context.Background(), env.storage.Storage)
	if err != nil || cfg == nil {
		t.Fatalf("stored config: %v %v", cfg, err)
	}
	return cfg
}

func parseTimeField(t testing.TB, field string, v interface{}) time.Time {
	t.Helper()
	s, _ := v.(string)
	ts, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatalf("%s = %q: %v", field, s, err)
	}
	return ts
}

// lostEventSent says whether any event claimed the login token is lost.
func lostEventSent(env *testEnv) bool {
	env.events.Lock()
	defer env.events.Unlock()
	for _, ev := range env.events.Events {
		if ev.Event.GetMetadata().GetFields()["login_token_lost"].GetStringValue() == "true" {
			return true
		}
	}
	return false
}

func putWAL(t testing.TB, env *testEnv, tok string, startedAt time.Time) string {
	t.Helper()
	id, err := framework.PutWAL(context.Background(), env.storage, walKindRotation,
		&rotationWAL{OldTokenSHA256: tokenHash(tok), StartedAt: startedAt.UTC()})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// refreshHookTransport runs onRefresh (once) when a refresh passes, before forwarding it.
type refreshHookTransport struct {
	base      http.RoundTripper
	mu        sync.Mutex
	onRefresh func()
}

func (h *refreshHookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte("refreshApiUserLoginToken")) {
		h.mu.Lock()
		hook := h.onRefresh
		h.onRefresh = nil
		h.mu.Unlock()
		if hook != nil {
			hook()
		}
	}
	return h.base.RoundTrip(r)
}

// proxyTransport forwards every call to the real (mock) inabit over the network and lets a test
// rewrite inabit's answer to a refresh, or hold an access-token call, as a proxy or a slow
// inabit would.
type proxyTransport struct {
	base http.RoundTripper

	mu sync.Mutex
	// rewriteRefresh, when set, rewrites (once) the answer to the next refresh that inabit applied.
	rewriteRefresh func(status int, body []byte) (int, []byte)
	// holdAccess, when set, holds the next access-token call (once) until release is closed or
	// the call's context ends, then fails it as a timeout would. held is closed once it is held.
	holdAccess bool
	held       chan struct{}
	release    chan struct{}
	// log records the order in which calls reached inabit.
	log []string
}

func newProxyTransport() *proxyTransport {
	return &proxyTransport{base: http.DefaultTransport, held: make(chan struct{}), release: make(chan struct{})}
}

type timeoutError struct{}

func (timeoutError) Error() string {
	return "net/http: request canceled (Client.Timeout exceeded while awaiting headers)"
}

func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

func (a *proxyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	refresh := bytes.Contains(body, []byte("refreshApiUserLoginToken"))

	a.mu.Lock()
	hold := !refresh && a.holdAccess
	a.holdAccess = a.holdAccess && refresh
	var rewrite func(int, []byte) (int, []byte)
	if refresh {
		rewrite, a.rewriteRefresh = a.rewriteRefresh, nil
	}
	a.mu.Unlock()

	if hold {
		close(a.held)
		select {
		case <-a.release:
		case <-r.Context().Done():
		}
		return nil, timeoutError{}
	}
	a.mu.Lock()
	a.log = append(a.log, map[bool]string{true: "refresh", false: "access"}[refresh])
	a.mu.Unlock()
	res, err := a.base.RoundTrip(r)
	if err != nil || rewrite == nil {
		return res, err
	}
	got, err := io.ReadAll(res.Body)
	_ = res.Body.Close()
	if err != nil {
		return nil, err
	}
	status, out := rewrite(res.StatusCode, got)
	res.StatusCode = status
	res.Status = http.StatusText(status)
	res.Body = io.NopCloser(bytes.NewReader(out))
	res.ContentLength = int64(len(out))
	res.Header.Del("Content-Length")
	return res, nil
}

// addGraphQLErrors adds a GraphQL errors[] entry to inabit's answer, keeping its data.
func addGraphQLErrors(t *testing.T, body []byte, entry map[string]interface{}) []byte {
	t.Helper()
	var ans map[string]interface{}
	if err := json.Unmarshal(body, &ans); err != nil {
		t.Errorf("inabit's answer is not JSON: %v", err)
		return body
	}
	ans["errors"] = []interface{}{entry}
	out, _ := json.Marshal(ans)
	return out
}

// forceFetch makes every read fetch a new access token (min TTL = the token's life).
var forceFetch = map[string]interface{}{"access_token_min_ttl": "15m"}

func (e *testEnv) readTokenErr() error {
	resp, err := e.request(logical.ReadOperation, "token", nil)
	if err == nil && resp.IsError() {
		err = resp.Error()
	}
	return err
}

func (e *testEnv) readStatic(t testing.TB) *logical.Response {
	t.Helper()
	resp, err := e.request(logical.ReadOperation, "static-token", nil)
	if err != nil || resp.IsError() {
		t.Fatalf("static-token read: resp=%#v err=%v", resp, err)
	}
	return resp
}

// answerRewriter rewrites inabit's answers on their way back, as a proxy might; inabit itself
// applied the call.
type answerRewriter struct {
	base    http.RoundTripper
	rewrite func(body string) string
}

func (a *answerRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := a.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	out := a.rewrite(string(body))
	res.Body = io.NopCloser(strings.NewReader(out))
	res.ContentLength = int64(len(out))
	res.Header.Del("Content-Length")
	return res, nil
}
