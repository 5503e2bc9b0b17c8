package inabit

import (
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"

	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// TestScheduleFieldsOverAPI: Vault's rules and wording for the two ways to schedule, each bad
// write a 400 that changes nothing.
func TestScheduleFieldsOverAPI(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	bad := []struct {
		data map[string]interface{}
		want string
	}{
		{map[string]interface{}{"rotation_schedule": "0 10 * * 2", "rotation_period": "24h"}, "mutually exclusive fields rotation_schedule and rotation_period were both specified"},
		{map[string]interface{}{"rotation_window": "2h"}, "cannot use rotation_window without rotation_schedule"},
		{map[string]interface{}{"rotation_schedule": "every tuesday"}, `rotation_schedule "every tuesday" is not a 5-field cron expression`},
		{map[string]interface{}{"rotation_schedule": "0 10 * * 2 2026"}, `rotation_schedule "0 10 * * 2 2026"`},
		{map[string]interface{}{"rotation_schedule": "TZ=Asia/Jerusalem 0 10 * * 2"}, "always evaluated in UTC"},
		{map[string]interface{}{"rotation_schedule": "0 10 1 */2 *"}, "longer than the login token's lifetime"},
		{map[string]interface{}{"rotation_schedule": "0 10 * * 2", "rotation_window": "30m"}, "rotation_window must be between 1h0m0s"},
	}
	before := env.readConfig(t)
	for _, tc := range bad {
		resp, err := env.request(logical.UpdateOperation, "config", tc.data)
		if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), tc.want) {
			t.Errorf("write %v: resp=%v err=%v, want a 400 containing %q", tc.data, resp, err, tc.want)
		}
	}
	if after := env.readConfig(t); after["rotation_period"] != before["rotation_period"] || after["rotation_schedule"] != "" {
		t.Fatalf("a refused write changed the config: %v", after)
	}

	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_schedule": "0  10 * * 2", "rotation_window": "2h"}); err != nil {
		t.Fatal(err)
	}
	cfg := env.readConfig(t)
	if cfg["rotation_schedule"] != "0 10 * * 2" || cfg["rotation_period"] != int64(0) || cfg["rotation_window"] != int64(7200) ||
		cfg["next_rotation_reason"] != rotation.ReasonSchedule || !strings.HasSuffix(cfg["next_rotation_at"].(string), "T10:00:00Z") {
		t.Fatalf("schedule not in effect: %v", cfg)
	}
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "100h"}); err != nil {
		t.Fatal(err)
	}
	cfg = env.readConfig(t)
	if cfg["rotation_schedule"] != "" || cfg["rotation_window"] != int64(0) || cfg["rotation_period"] != int64(360000) || cfg["next_rotation_reason"] != rotation.ReasonPeriod {
		t.Fatalf("rotation_period did not clear the schedule: %v", cfg)
	}
}

// A schedule whose next slot comes after the expiry deadline: the tick rotates at the deadline,
// says why in token-read warnings, and the event's trigger is "expiry".
func TestExpiryWinsOverSchedule(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 8 * 24 * time.Hour})
	// Weekly, four days ahead: after a 3-day token's deadline (18h before its exp).
	weekly := fmt.Sprintf("0 10 * * %d", int(env.clock.now().UTC().Add(4*24*time.Hour).Weekday()))
	env.configure(t, map[string]interface{}{"rotation_schedule": weekly})
	env.mock.SetLoginTokenTTL(3 * 24 * time.Hour) // inabit starts minting shorter tokens
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	cfg := env.readConfig(t)
	if cfg["next_rotation_reason"] != rotation.ReasonExpiry {
		t.Fatalf("3-day token on a weekly schedule: next rotation %v because %v", cfg["next_rotation_at"], cfg["next_rotation_reason"])
	}
	warned := false
	for _, w := range env.readToken(t).Warnings {
		warned = warned || strings.Contains(w, "rotation_schedule slot")
	}
	if !warned {
		t.Fatal("token reads do not say that the expiry overrides the schedule")
	}
	rotated := storedToken(t, env)
	env.clock.advance(3*24*time.Hour - 17*time.Hour) // past exp - life/4 (18h before exp)
	env.tick(t)
	if storedToken(t, env) == rotated || !env.mock.LoginTokenValid(storedToken(t, env)) {
		t.Fatal("the token was not rotated before it expired")
	}
	env.events.Lock()
	last := env.events.Events[len(env.events.Events)-1]
	env.events.Unlock()
	if string(last.Type) != eventRotate || last.Event.Metadata.AsMap()["trigger"] != rotation.ReasonExpiry {
		t.Fatalf("last event %s %v, want %s with trigger %s", last.Type, last.Event.Metadata.AsMap(), eventRotate, rotation.ReasonExpiry)
	}
}

// Vault's automated-rotation fields (sdk/helper/automatedrotationutil) take rotation_period=0 as
// "not set": it never excludes rotation_schedule, it leaves a stored schedule alone, and with no
// schedule nothing is scheduled. A template that sends every field, 0 for the one it does not
// use, works here as on Vault. Without a period or a schedule the token is still rotated at its
// expiry deadline; the write says so.
func TestRotationPeriodZeroIsNotSetAsInVault(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)

	withSchedule := map[string]interface{}{"rotation_schedule": "0 10 * * 2", "rotation_period": 0}
	if _, err := env.requestOK(logical.UpdateOperation, "config", withSchedule); err != nil {
		t.Fatalf("rotation_schedule with rotation_period=0: %v", err)
	}
	cfg := env.readConfig(t)
	if cfg["rotation_schedule"] != "0 10 * * 2" || cfg["rotation_period"] != int64(0) || cfg["next_rotation_reason"] != rotation.ReasonSchedule {
		t.Fatalf("after rotation_schedule with rotation_period=0: %v", cfg)
	}
	// Sent again, or rotation_period=0 alone: the schedule stays and nothing is saved.
	env.storage.failPutsTo(configStorageKey, true)
	for _, data := range []map[string]interface{}{withSchedule, {"rotation_period": 0}} {
		if _, err := env.requestOK(logical.UpdateOperation, "config", data); err != nil {
			t.Fatalf("write %v on a schedule: %v (nothing should have changed)", data, err)
		}
	}
	env.storage.failPutsTo(configStorageKey, false)
	if cfg := env.readConfig(t); cfg["rotation_schedule"] != "0 10 * * 2" || cfg["next_rotation_reason"] != rotation.ReasonSchedule {
		t.Fatalf("rotation_period=0 alone changed the schedule: %v", cfg)
	}

	// An empty rotation_schedule with a period: the period, as on Vault.
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_schedule": "", "rotation_period": 86400}); err != nil {
		t.Fatalf("empty rotation_schedule with rotation_period=86400: %v", err)
	}
	if cfg := env.readConfig(t); cfg["rotation_schedule"] != "" || cfg["rotation_period"] != int64(86400) || cfg["next_rotation_reason"] != rotation.ReasonPeriod {
		t.Fatalf("after an empty rotation_schedule with rotation_period=86400: %v", cfg)
	}

	// Neither: no rotation by age or schedule, only at the expiry deadline, and the write says so.
	for _, data := range []map[string]interface{}{{"rotation_period": 0}, {"rotation_period": 0, "rotation_schedule": ""}} {
		resp, err := env.requestOK(logical.UpdateOperation, "config", data)
		if err != nil {
			t.Fatalf("write %v: %v", data, err)
		}
		cfg := env.readConfig(t)
		if cfg["rotation_period"] != int64(0) || cfg["rotation_schedule"] != "" || cfg["next_rotation_reason"] != rotation.ReasonExpiry {
			t.Fatalf("after %v: rotation_period %v, rotation_schedule %q, next rotation %v because %v; want 0, none, at the expiry deadline",
				data, cfg["rotation_period"], cfg["rotation_schedule"], cfg["next_rotation_at"], cfg["next_rotation_reason"])
		}
		var warnings []string
		if resp != nil {
			warnings = resp.Warnings
		}
		if w := strings.Join(warnings, " "); !strings.Contains(w, "rotation_period is 0") || !strings.Contains(w, cfg["next_rotation_at"].(string)) ||
			!strings.Contains(w, "disable_automated_rotation") {
			t.Errorf("write %v: warnings %q do not say that only the expiry deadline (%v) rotates the token", data, warnings, cfg["next_rotation_at"])
		}
	}
	env.tickOK(t)
	env.clock.advance(20 * 24 * time.Hour) // past what any period would have allowed, short of the deadline
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 0 {
		t.Fatalf("%d refreshes with rotation_period=0 and no schedule before the expiry deadline, want 0", got)
	}
	deadline := parseTimeField(t, "next_rotation_at", env.readConfig(t)["next_rotation_at"])
	env.clock.advance(deadline.Sub(env.clock.now()) + time.Minute)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("%d refreshes past the expiry deadline with rotation_period=0, want 1", got)
	}
}
