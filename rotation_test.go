package inabit

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func TestPeriodicRotation(t *testing.T) {
	cases := []struct {
		name         string
		config       map[string]interface{}
		advance      time.Duration
		wantRefresh  int
		wantRotation bool
	}{
		{"not due", map[string]interface{}{"rotation_period": "24h"}, 23 * time.Hour, 0, false},
		{"due", map[string]interface{}{"rotation_period": "24h"}, 24*time.Hour + time.Minute, 1, true},
		{"disabled", map[string]interface{}{"rotation_period": "24h", "disable_automated_rotation": true}, 48 * time.Hour, 0, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, tc.config)
			old := storedToken(t, env)
			env.clock.advance(tc.advance)
			env.tick(t)
			env.tick(t) // a second tick right after must not rotate again
			if got := env.mock.Calls(mockinabit.OpRefresh); got != tc.wantRefresh {
				t.Fatalf("refresh calls = %d, want %d", got, tc.wantRefresh)
			}
			if rotated := storedToken(t, env) != old; rotated != tc.wantRotation {
				t.Fatalf("rotated = %v, want %v", rotated, tc.wantRotation)
			}
			if storedToken(t, env) != env.mock.LoginToken() {
				t.Fatal("stored token is not the live one")
			}
		})
	}
}

func TestPeriodicFailureBacksOff(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h"})
	// inabit's own error answer: the call is over, so the old token is probed at once and backoff applies.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "INTERNAL", Message: "try later", Times: 2})
	env.clock.advance(time.Hour + time.Second)

	steps := []struct {
		advance      time.Duration
		wantCalls    int
		wantFailures int
	}{
		{0, 1, 1},                // due: fails
		{30 * time.Second, 1, 1}, // inside the 1m backoff: no call
		{31 * time.Second, 2, 2}, // 1m passed: fails again
		{90 * time.Second, 2, 2}, // inside the 2m backoff
		{31 * time.Second, 3, 0}, // 2m passed: succeeds
		{10 * time.Minute, 3, 0}, // healthy and not due
	}
	for i, s := range steps {
		env.clock.advance(s.advance)
		env.tick(t)
		if got := env.mock.Calls(mockinabit.OpRefresh); got != s.wantCalls {
			t.Fatalf("step %d: refresh calls = %d, want %d", i, got, s.wantCalls)
		}
		if got := env.readConfig(t)["rotation_failures"]; got != s.wantFailures {
			t.Fatalf("step %d: rotation_failures = %v, want %d", i, got, s.wantFailures)
		}
	}
	if storedToken(t, env) != env.mock.LoginToken() {
		t.Fatal("stored token is not the live one after recovery")
	}
}

// TestRotationFaults is the unit-level fault matrix for refreshApiUserLoginToken: what the caller
// sees at once, what status records, and how it ends once refresh_grace_period has passed.
func TestRotationFaults(t *testing.T) {
	const (
		unchanged = "unchanged and still valid"
		unknown   = "outcome unknown"
		lost      = "LOGIN TOKEN LOST"
	)
	cases := []struct {
		name      string
		fault     mockinabit.Fault
		wantFirst string // status right after rotate-root
		wantLost  bool   // once settled
	}{
		{"500", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 500, Times: 1}, unknown, false},
		{"503", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Times: 1}, unknown, false},
		{"429", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "30", Times: 1}, unchanged, false},
		{"timeout, never applied", mockinabit.Fault{Kind: mockinabit.FaultHang, Delay: 5 * time.Second, Times: 1}, unknown, false},
		{"timeout, applied after we gave up", mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 1500 * time.Millisecond, Times: 1}, unknown, true},
		{"html 401", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 401, Body: "<html><title>401</title></html>", Times: 1}, unknown, false},
		{"html 403 (WAF)", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, ContentType: "text/html", Body: "<html><title>403 Forbidden</title></html>", Times: 1}, unknown, false},
		{"graphql unauthenticated", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "no", Times: 1}, unchanged, false},
		{"graphql forbidden", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "FORBIDDEN", Message: "role may not refresh", Times: 1}, unchanged, false},
		{"graphql generic", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "INTERNAL", Message: "boom", Times: 1}, unchanged, false},
		{"garbage", mockinabit.Fault{Kind: mockinabit.FaultGarbage, Times: 1}, unknown, false},
		{"5 MiB body", mockinabit.Fault{Kind: mockinabit.FaultOversize, Size: 5 << 20, Times: 1}, unknown, false},
		{"answer dropped after apply", mockinabit.Fault{Kind: mockinabit.FaultDropAfterApply, Times: 1}, unknown, true},
		{"answer too late after apply", mockinabit.Fault{Kind: mockinabit.FaultHoldAfterApply, Delay: 5 * time.Second, Times: 1}, unknown, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"request_timeout": 1})
			before := env.mock.LoginToken()
			env.mock.InjectFault(mockinabit.OpRefresh, tc.fault)

			_, err := env.request(logical.UpdateOperation, "rotate-root", nil)
			if err == nil || !strings.Contains(err.Error(), tc.wantFirst) {
				t.Fatalf("rotate-root error = %v, want one containing %q", err, tc.wantFirst)
			}
			cfg := env.readConfig(t)
			if msg := cfg["last_rotation_error"].(string); !strings.Contains(msg, tc.wantFirst) || cfg["rotation_failures"] != 1 {
				t.Fatalf("status = %q / %v", msg, cfg["rotation_failures"])
			}
			if ev := env.eventTypes(); len(ev) != 1 || ev[0] != eventRotateFail {
				t.Fatalf("events = %v, want one %s", ev, eventRotateFail)
			}
			wantWALs := 0
			if tc.wantFirst == unknown {
				wantWALs = 1
			}
			if n := walCount(t, env); n != wantWALs {
				t.Fatalf("%d WAL entries, want %d", n, wantWALs)
			}
			if tc.wantFirst == unknown {
				// Nothing is asked or sent until the grace period is over, then the tick settles it.
				calls := env.mock.Calls(mockinabit.OpRefresh) + env.mock.Calls(mockinabit.OpAccessToken)
				if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil || !strings.Contains(err.Error(), "checked again at") {
					t.Fatalf("second rotate-root inside the grace period: %v", err)
				}
				env.tick(t)
				if got := env.mock.Calls(mockinabit.OpRefresh) + env.mock.Calls(mockinabit.OpAccessToken); got != calls {
					t.Fatalf("%d calls to inabit inside the grace period", got-calls)
				}
				env.mock.WaitIdle(10 * time.Second)
				env.mock.ClearFaults()
				env.clock.advance(11 * time.Minute) // past request_timeout + refresh_grace_period
				env.tick(t)
				if n := walCount(t, env); n != 0 {
					t.Fatalf("%d WAL entries left after the grace period", n)
				}
			}
			msg := env.readConfig(t)["last_rotation_error"].(string)
			if got := strings.HasPrefix(msg, lost); got != tc.wantLost {
				t.Fatalf("lost = %v, want %v (status %q)", got, tc.wantLost, msg)
			}
			if survived := env.mock.LoginTokenValid(storedToken(t, env)); survived == tc.wantLost {
				t.Fatalf("token survived = %v, want %v", survived, !tc.wantLost)
			}
			if env.mock.LoginToken() != before && !tc.wantLost {
				t.Fatal("inabit rotated although we concluded it did not")
			}
			if !tc.wantLost {
				env.mock.ClearFaults()
				env.clock.advance(2 * time.Minute)
				if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil {
					t.Fatalf("recovery rotation failed: %v", err)
				}
				if storedToken(t, env) != env.mock.LoginToken() || env.readConfig(t)["last_rotation_error"] != "" {
					t.Fatal("healthy rotation did not recover the mount")
				}
			}
		})
	}
}

func TestWALWriteFailureDoesNotCallInabit(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsTo(framework.WALPrefix, true)
	_, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "inabit was not called") {
		t.Fatalf("err = %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("inabit was called without a WAL entry")
	}
	if !env.mock.LoginTokenValid(storedToken(t, env)) {
		t.Fatal("stored token died")
	}
	if !strings.Contains(env.readConfig(t)["last_rotation_error"].(string), "storage is not writable") {
		t.Fatal("failure not recorded")
	}
}

func TestPersistFailureKeepsTokenInMemoryUntilSaved(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails

	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err != nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "saving it to storage failed") {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	live := env.mock.LoginToken()
	if storedToken(t, env) == live {
		t.Fatal("test setup: storage accepted the write")
	}
	// Reads keep working with the in-memory token and warn about it.
	tr := env.readToken(t)
	if len(tr.Warnings) == 0 || !strings.Contains(tr.Warnings[0], "held in memory") {
		t.Fatalf("token read warnings = %v", tr.Warnings)
	}
	if got := env.readConfig(t)["last_rotation_error"].(string); !strings.Contains(got, "held in memory") {
		t.Fatalf("config status = %q", got)
	}
	if walCount(t, env) != 1 {
		t.Fatal("WAL entry must stay until the token is saved")
	}
	// A tick while storage is still broken must not rotate again (that would orphan the token).
	env.clock.advance(400 * time.Hour)
	env.tick(t)
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("rotated again while the previous token was unsaved")
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(-400 * time.Hour)
	env.tick(t)
	if storedToken(t, env) != live {
		t.Fatal("the next tick did not save the in-memory token")
	}
	if walCount(t, env) != 0 || env.readConfig(t)["last_rotation_error"] != "" {
		t.Fatal("state not clean after the save")
	}
}

func TestUnknownOutcomeBlocksNextRotationUntilResolved(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	// The refresh times out, and when the grace period is over inabit still cannot be asked.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Delay: 3 * time.Second, Times: 1})
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Times: 3})
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil || !strings.Contains(err.Error(), "outcome unknown") {
		t.Fatalf("err = %v", err)
	}
	env.clock.advance(11 * time.Minute) // past request_timeout + refresh_grace_period
	env.tick(t)
	status := env.readConfig(t)
	if walCount(t, env) != 1 || !strings.Contains(status["last_rotation_error"].(string), "cannot be asked") {
		t.Fatalf("an unresolved rotation must keep its WAL entry and say why: %v", status)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("refreshed again while the outcome was unknown")
	}
	// inabit is back: the next rotation first settles the old one, then proceeds.
	env.clock.advance(time.Minute)
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatalf("second rotation: %v", err)
	}
	if walCount(t, env) != 0 || storedToken(t, env) != env.mock.LoginToken() || env.readConfig(t)["last_rotation_error"] != "" {
		t.Fatal("mount not healthy after inabit came back")
	}
}

func TestRotationRacingConfigWrites(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil {
				t.Errorf("rotate: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			period := []string{"100h", "200h"}[round%2]
			if resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": period}); err != nil || resp.IsError() {
				t.Errorf("config write: %v %v", resp, err)
			}
		}()
		wg.Wait()
		if storedToken(t, env) != env.mock.LoginToken() {
			t.Fatalf("round %d: a config write overwrote the rotated token", round)
		}
	}
}

// 1000 reads while rotate-root runs and the config is rewritten twice.
func TestReadsDuringRotationNeverFail(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"access_token_min_ttl": "15m"}) // every read goes upstream
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 200 * time.Millisecond, Times: 1})
	env.mock.ResetCalls()

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := env.requestOK(logical.ReadOperation, "token", nil); err != nil {
				errs <- err
			}
		}()
		switch i {
		case 10:
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
					errs <- err
				}
			}()
		case 200, 500:
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": fmt.Sprintf("%dh", 100+i)}); err != nil {
					errs <- err
				}
			}(i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("operation failed during rotation: %v", err)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
}

func TestCleanWithUnsavedTokenLogsLoudly(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	env.b.Cleanup(context.Background())
	if !strings.Contains(env.logs.String(), "never saved to storage") {
		t.Fatal("unmount with an unsaved token was silent")
	}
}

func TestRotationWithDeadTokenSaysRejected(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.IssueLoginToken() // revoked behind Vault's back, e.g. by an old cron job
	_, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "rejected the stored login token") {
		t.Fatalf("err = %v", err)
	}
	cfg := env.readConfig(t)
	if !strings.Contains(cfg["last_rotation_error"].(string), "write it to inabit/config") {
		t.Fatalf("status does not say what to do: %v", cfg["last_rotation_error"])
	}
}

// The in-flight status is written before the refresh; storage that refuses it would refuse the
// new token too, so inabit is not called.
func TestInFlightStatusWriteFailureDoesNotCallInabit(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsTo(configStorageKey, true)
	_, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "inabit was not called") {
		t.Fatalf("err = %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 || walCount(t, env) != 0 {
		t.Fatal("inabit was called, or a WAL entry left, although the status could not be written")
	}
}

// Found by the simulation (seeds 90, 201): a refresh inabit declined drops its WAL entry, and if
// storage then refuses the status write, the in-flight "outcome unknown" status is left with no
// WAL entry behind it. The next tick settles it by asking inabit instead of showing it until the
// next rotation.
func TestInFlightStatusLeftWithoutWALEntryIsSettledByTheNextTick(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "360h"})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "FORBIDDEN", Message: "not allowed", Times: 1})
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the outcome's status fails
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("a declined refresh succeeded")
	}
	if st := storedConfig(t, env); st.OutcomeCheckAt.IsZero() || walCount(t, env) != 0 {
		t.Fatalf("test setup: outcome_check_at %v, %d WAL entries", st.OutcomeCheckAt, walCount(t, env))
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(time.Minute)
	env.tick(t)
	if st := storedConfig(t, env); !st.OutcomeCheckAt.IsZero() || st.LastRotationError != "" || st.LoginTokenLost {
		t.Fatalf("stale in-flight status not settled: outcome_check_at %v, status %q", st.OutcomeCheckAt, st.LastRotationError)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("the tick sent a refresh")
	}
}

// Mutation no-login-lock-during-refresh: a token read arriving while the refresh is on the wire
// waits for it and presents the new login token; it never asks inabit with the old one, which the
// refresh is killing (its access token would die with it, or its rejection be taken for LOST).
func TestReadDuringRefreshWaitsAndPresentsTheNewToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	read := make(chan *logical.Response, 1)
	readErr := make(chan error, 1)
	calledDuring := -1
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		before := env.mock.Calls(mockinabit.OpAccessToken)
		go func() {
			resp, err := env.requestOK(logical.ReadOperation, "token", nil)
			read <- resp
			readErr <- err
		}()
		// Hold the refresh for a second: a reader not kept out would reach inabit meanwhile.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) && env.mock.Calls(mockinabit.OpAccessToken) == before {
			time.Sleep(10 * time.Millisecond)
		}
		calledDuring = env.mock.Calls(mockinabit.OpAccessToken) - before
	}})
	env.configure(t, forceFetch) // every read fetches an access token
	old := env.mock.LoginToken()
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatalf("rotate-root: %v", err)
	}
	if calledDuring < 0 || env.mock.LoginToken() == old {
		t.Fatal("setup: no refresh passed the hook")
	}
	if calledDuring != 0 {
		t.Fatalf("a token read reached inabit %d time(s) with the old login token while the refresh was on the wire", calledDuring)
	}
	var resp *logical.Response
	select {
	case resp = <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the read that waited for the refresh never finished")
	}
	if err := <-readErr; err != nil || !env.mock.AccessTokenValid(resp.Data["access_token"].(string)) {
		t.Fatalf("the read that waited for the refresh: %v", err)
	}
}

// Mutation no-save-retry: storage that refuses the rotated token's save once and then recovers
// gets the token within the same rotation: it is stored, the rotation succeeds, and nothing is
// left held in memory as the only copy.
func TestRotatedTokenSaveRefusedOnceIsRetried(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		// The in-flight status is written; storage refuses the next config write (the new token), once.
		env.storage.refuseNextPuts(configStorageKey, 1)
	}})
	env.configure(t, nil)
	old := env.mock.LoginToken()
	resp, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if env.mock.LoginToken() == old {
		t.Fatal("setup: inabit did not apply the refresh")
	}
	_, _, held := env.b.login.held()
	if got := storedToken(t, env); got != env.mock.LoginToken() || held || err != nil || len(resp.Warnings) != 0 {
		t.Fatalf("storage refused the new token's save once: stored the live token %v, held in memory %v, rotate-root %v (warnings %v)",
			got == env.mock.LoginToken(), held, err, resp.Warnings)
	}
}
