package inabit

// Tests of when a rotation runs and what a failed refresh concludes: schedule, backoff, faults.

import (
	"strings"
	"testing"
	"time"

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
