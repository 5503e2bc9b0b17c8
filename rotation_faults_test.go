package inabit

// Tests of rotation.go and rotation_refresh.go under faults around the refresh: a caller or a
// tick whose context ends, a reader holding the refresh back, a failed manual rotation, a proxy's
// page, storage refusing the new token's save.

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// A rotate-root whose caller hangs up right after inabit answered still saves the new token,
// deletes its WAL entry and leaves a clean status (issue 8 defect 1: the new token was stranded
// in memory).
func TestRotateRootWhoseCallerHangsUpAfterRefreshSavesTheNewToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	old := env.mock.LoginToken()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The client hangs up right after inabit answered: at the first save of the new token.
	vs := &vaultStorage{Storage: env.storage, onConfigPut: cancel}
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vs})
	t.Logf("rotate-root with the caller gone: resp=%v err=%v", resp, err)

	if env.mock.LoginTokenValid(old) {
		t.Fatal("setup: inabit did not refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("the caller hung up after inabit answered and the new token is not in storage (stored token live at inabit: %v)",
			env.mock.LoginTokenValid(got))
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left after a rotation whose caller hung up", n)
	}
	if s := storedConfig(t, env).LastRotationError; s != "" {
		t.Fatalf("stored status = %q, want clean", s)
	}
}

// A periodic tick whose deadline passes while inabit answers still saves the new token (issue 8
// defect 1).
func TestTickWhoseDeadlinePassesDuringRefreshSavesTheNewToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h"})
	old := env.mock.LoginToken()
	env.clock.advance(time.Hour + time.Minute)
	// inabit answers after 1s; Vault's deadline on the periodic call is 500ms.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: time.Second, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	vs := &vaultStorage{Storage: env.storage}
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.RollbackOperation, Storage: vs})
	t.Logf("tick past its deadline: resp=%v err=%v", resp, err)

	if env.mock.Calls(mockinabit.OpRefresh) != 1 || env.mock.LoginTokenValid(old) {
		t.Fatal("setup: the tick did not refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("the tick's deadline passed after inabit answered and the new token is not in storage (stored token live at inabit: %v)",
			env.mock.LoginTokenValid(got))
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left", n)
	}
}

// The rotation takes loginMu before it writes its WAL entry and StartedAt, so a token read's slow
// access-token fetch (up to inabitapi.MaxAttempts x request_timeout, 3 x 60s here) cannot make the
// refresh leave minutes after the StartedAt other nodes count refresh_grace_period from. (The
// review found StartedAt taken before the wait: a node taking over (step-down) settled the entry
// -- probe "alive", WAL deleted, status cleared -- before the old active node even sent the
// refresh, which then killed the stored token: the login token lost under a healthy status.)
func TestRotationWritesItsWALOnlyOnceReadersLetGo(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tr := newProxyTransport()
	env.b.newAPI = apiOver(tr)
	env.configure(t, map[string]interface{}{"request_timeout": 60, "refresh_grace_period": 30})
	old := env.mock.LoginToken()

	// A token read on node A must fetch (its cached access token is no longer fresh enough), and
	// inabit is slow to answer it: the fetch holds loginMu.RLock.
	env.clock.advance(15 * time.Minute)
	tr.mu.Lock()
	tr.holdAccess = true
	tr.mu.Unlock()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = env.request(logical.ReadOperation, "token", nil)
	}()
	select {
	case <-tr.held:
	case <-time.After(10 * time.Second):
		t.Fatal("setup: the token read never reached inabit")
	}

	// rotate-root on node A: WAL and in-flight status written, then it waits for loginMu.
	vsA := &vaultStorage{Storage: env.storage}
	rotDone := make(chan *logical.Response, 1)
	go func() {
		resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vsA})
		if err != nil {
			resp = logical.ErrorResponse(err.Error())
		}
		rotDone <- resp
	}()
	// Fixed: the rotation takes loginMu before it writes its WAL entry and start time, so a
	// reader's slow fetch cannot make the refresh go out long after the time other nodes see.
	time.Sleep(time.Second)
	if n, sent := walCount(t, env), env.mock.Calls(mockinabit.OpRefresh); n != 0 || sent != 0 {
		t.Fatalf("a WAL entry was written (%d entries) or the refresh sent (%d) while a reader still held loginMu", n, sent)
	}
	close(tr.release)
	<-readDone
	var resp *logical.Response
	select {
	case resp = <-rotDone:
	case <-time.After(20 * time.Second):
		t.Fatal("node A's rotation never finished")
	}
	stored := storedConfig(t, env)
	if resp.IsError() || env.mock.LoginTokenValid(old) || !env.mock.LoginTokenValid(stored.LoginToken) || walCount(t, env) != 0 {
		t.Fatalf("rotation after the reader let go: resp %v, stored token live %v, status %q", resp.Data, env.mock.LoginTokenValid(stored.LoginToken), stored.LastRotationError)
	}
}

// Issue 11's reason for rotation_schedule: a rotation whose answer is lost needs inabit support,
// so operators want rotations only when people are at work ("0 10 * * 2"). A manual rotate-root
// on Friday night that inabit declines (429, nothing applied) bumps rotation_failures, yet the
// periodic tick sends no refresh before the next slot while the token is far from expiry. (The
// review found plannedRotation's backoff branch refreshing at 23:01, 23:03, 23:07, ... all
// weekend.)
func TestFailedRotateRootNeverMakesTicksRefreshOutsideSchedule(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.clock.advance(time.Until(time.Date(2027, 3, 5, 23, 0, 0, 0, time.UTC))) // a Friday, 23:00 UTC
	env.mock.IssueLoginToken()                                                  // a token minted on that clock
	env.configure(t, map[string]interface{}{"rotation_schedule": "0 10 * * 2"})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429,
		ContentType: "application/json", Body: `{"errors":[{"message":"rate limited"}]}`, Times: 1})
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("setup: rotate-root succeeded")
	}
	cfg := env.readConfig(t)
	t.Logf("after the failed rotate-root: next_rotation_at %v (%v)", cfg["next_rotation_at"], cfg["next_rotation_reason"])
	for i := 0; i < 3; i++ {
		env.clock.advance(5 * time.Minute)
		env.tickOK(t)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("%d periodic refreshes sent on Friday night with rotation_schedule \"0 10 * * 2\" (next slot Tuesday 10:00) after one failed manual rotate-root",
			got-1)
	}
}

// A Latin-1 proxy page answering a refresh is handled without a panic, and loginMu is not left
// write-locked. (The review found inabitapi's bodyHint finding "<title>" in strings.ToLower(body)
// and slicing the ORIGINAL body with that index: ToLower turns every invalid UTF-8 byte into
// U+FFFD (3 bytes), so the index was past the end of the body. The panic hit rotateLocked with
// loginMu write-locked (no defer), in a refresh whose outcome is unknown; on the token-read path
// it hit singleflight's goroutine and took the process down.)
func TestLatin1ProxyPageOnRefreshNeverPanics(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	page := "<html><head><meta name=\"description\" content=\"Acc\xe8s refus\xe9: requ\xeate bloqu\xe9e par le syst\xe8me de s\xe9curit\xe9 r\xe9seau d\xe9di\xe9\">" +
		"<title>502</title></html>"
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 502,
		ContentType: "text/html; charset=iso-8859-1", Body: page, Times: 1})
	var panicked interface{}
	func() {
		defer func() { panicked = recover() }()
		_, _ = env.request(logical.UpdateOperation, "rotate-root", nil)
	}()
	if panicked != nil {
		locked := !env.b.loginMu.TryLock()
		if !locked {
			env.b.loginMu.Unlock()
		}
		t.Fatalf("rotate-root panicked on a Latin-1 502 page: %v (loginMu left write-locked: %v)", panicked, locked)
	}
}

// Storage refusing the rotated token's save: it is tried 4 times, with waits on the backend's
// clock of about 100 ms, 200 ms and 400 ms (±20 %) between tries; a wait that ends with the
// context stops the tries. A token never saved is held in memory.
func TestRotatedTokenSaveRetriesWaitOnTheBackendsClock(t *testing.T) {
	for _, tc := range []struct {
		name     string
		refusals int
		waitErr  error
		waits    int
		held     bool
	}{
		{"saved on the last try", 3, nil, 3, false},
		{"refused on every try", 4, nil, 3, true},
		{"context ends in the first wait", 4, context.Canceled, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			var waits []time.Duration
			env.b.sleep = func(_ context.Context, d time.Duration) error {
				waits = append(waits, d)
				return tc.waitErr
			}
			env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
				// The in-flight status is written; storage refuses the next config writes.
				env.storage.refuseNextPuts(configStorageKey, tc.refusals)
			}})
			env.configure(t, nil)
			resp, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
			t.Logf("rotate-root: %v %v", resp, err)
			if len(waits) != tc.waits {
				t.Fatalf("%d waits between save tries (%v), want %d", len(waits), waits, tc.waits)
			}
			for i, d := range waits {
				base := 100 * time.Millisecond << i
				if lo, hi := base*8/10, base*12/10+time.Nanosecond; d < lo || d > hi {
					t.Fatalf("wait %d is %s, want %s to %s", i+1, d, lo, hi)
				}
			}
			_, _, held := env.b.login.held()
			if saved := storedToken(t, env) == env.mock.LoginToken(); held != tc.held || saved == tc.held {
				t.Fatalf("held in memory %v, saved %v; want held %v", held, saved, tc.held)
			}
		})
	}
}
