package inabit

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
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

// TestPlannedRotation works the schedule out on a virtual clock: no Vault, no sleeps.
func TestPlannedRotation(t *testing.T) {
	token := func(iat, exp string) string {
		return makeJWT(t, jwt.MapClaims{"iat": utc(iat).Unix(), "exp": utc(exp).Unix()})
	}
	month := token("2026-12-01T00:00:00Z", "2026-12-31T00:00:00Z") // 30 days: deadline 24h before exp
	cases := []struct {
		name       string
		cfg        inabitConfig
		now        string
		wantAt     string
		wantReason string
	}{
		{"period from iat", inabitConfig{LoginToken: month, RotationPeriod: 360 * time.Hour, LoginTokenStoredAt: utc("2026-12-01T00:00:00Z")},
			"2026-12-02T00:00:00Z", "2026-12-16T00:00:00Z", reasonPeriod},
		{"period longer than the token's life: expiry wins", inabitConfig{LoginToken: token("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z"), RotationPeriod: 360 * time.Hour},
			"2026-12-01T01:00:00Z", "2026-12-02T12:00:00Z", reasonExpiry},
		{"a slot after the expiry deadline: expiry wins", inabitConfig{LoginToken: month, RotationSchedule: "0 0 * * *", LoginTokenStoredAt: utc("2026-12-30T23:30:00Z")},
			"2026-12-30T23:40:00Z", "2026-12-30T00:00:00Z", reasonExpiry},
		{"daily slot after midnight UTC", inabitConfig{LoginToken: token("2026-12-31T00:00:00Z", "2027-01-30T00:00:00Z"), RotationSchedule: "0 0 * * *", LoginTokenStoredAt: utc("2026-12-31T23:30:00Z")},
			"2026-12-31T23:40:00Z", "2027-01-01T00:00:00Z", reasonSchedule},
		{"month end: the 31st skips short months", inabitConfig{LoginToken: token("2027-01-31T13:00:00Z", "2027-05-01T00:00:00Z"), RotationSchedule: "0 12 31 * *", LoginTokenStoredAt: utc("2027-01-31T13:00:00Z")},
			"2027-02-01T00:00:00Z", "2027-03-31T12:00:00Z", reasonSchedule},
		{"missed slot without a window is due at once", inabitConfig{LoginToken: month, RotationSchedule: "0 10 * * 2", LoginTokenStoredAt: utc("2026-12-07T09:00:00Z")},
			"2026-12-08T15:00:00Z", "2026-12-08T10:00:00Z", reasonSchedule},
		{"a slot before the schedule was written is not missed", inabitConfig{LoginToken: month, RotationSchedule: "0 10 * * 2", LoginTokenStoredAt: utc("2026-12-01T00:00:00Z"), ScheduleSetAt: utc("2026-12-08T11:00:00Z")},
			"2026-12-08T11:01:00Z", "2026-12-15T10:00:00Z", reasonSchedule},
		{"missed slot inside the window", inabitConfig{LoginToken: month, RotationSchedule: "0 10 * * 2", RotationWindow: 2 * time.Hour, LoginTokenStoredAt: utc("2026-12-07T09:00:00Z")},
			"2026-12-08T11:59:00Z", "2026-12-08T10:00:00Z", reasonSchedule},
		{"missed slot outside the window waits for the next", inabitConfig{LoginToken: month, RotationSchedule: "0 10 * * 2", RotationWindow: 2 * time.Hour, LoginTokenStoredAt: utc("2026-12-07T09:00:00Z")},
			"2026-12-08T12:01:00Z", "2026-12-15T10:00:00Z", reasonSchedule},
		{"several missed slots: the latest one counts for the window", inabitConfig{LoginToken: month, RotationSchedule: "0 10 * * *", RotationWindow: time.Hour, LoginTokenStoredAt: utc("2026-12-02T09:00:00Z")},
			"2026-12-05T10:30:00Z", "2026-12-05T10:00:00Z", reasonSchedule},
		{"weekly schedule, token dies first: expiry wins", inabitConfig{LoginToken: token("2026-12-08T11:00:00Z", "2026-12-12T11:00:00Z"), RotationSchedule: "0 10 * * 2", LoginTokenStoredAt: utc("2026-12-08T11:00:00Z")},
			"2026-12-08T12:00:00Z", "2026-12-11T11:00:00Z", reasonExpiry},
		{"backoff near the deadline is cut to it", inabitConfig{LoginToken: month, RotationPeriod: 360 * time.Hour, RotationFailures: 6, LastRotationErrorAt: utc("2026-12-29T23:50:00Z")},
			"2026-12-29T23:55:00Z", "2026-12-30T00:00:00Z", reasonExpiry},
		{"backoff past the deadline still waits a minute", inabitConfig{LoginToken: month, RotationPeriod: 360 * time.Hour, RotationFailures: 6, LastRotationErrorAt: utc("2026-12-30T06:00:00Z")},
			"2026-12-30T06:00:30Z", "2026-12-30T06:01:00Z", reasonExpiry},
		{"backoff near a slot", inabitConfig{LoginToken: month, RotationSchedule: "0 10 * * 2", RotationFailures: 2, LastRotationErrorAt: utc("2026-12-08T10:00:05Z"), LoginTokenStoredAt: utc("2026-12-07T00:00:00Z")},
			"2026-12-08T10:01:00Z", "2026-12-08T10:02:05Z", reasonRetry},
		{"outcome check holds everything back", inabitConfig{LoginToken: month, RotationPeriod: time.Hour, RotationFailures: 1, LastRotationErrorAt: utc("2026-12-01T01:00:00Z"), OutcomeCheckAt: utc("2026-12-01T01:10:00Z")},
			"2026-12-01T01:00:30Z", "2026-12-01T01:10:00Z", reasonOutcomeCheck},
		{"lost: nothing planned", inabitConfig{LoginToken: month, RotationPeriod: time.Hour, LoginTokenLost: true}, "2026-12-01T01:00:00Z", "", ""},
		{"disabled: nothing planned", inabitConfig{LoginToken: month, RotationPeriod: time.Hour, DisableAutomatedRotation: true}, "2026-12-01T01:00:00Z", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, reason := tc.cfg.plannedRotation(utc(tc.now))
			if formatTime(at) != tc.wantAt || reason != tc.wantReason {
				t.Fatalf("planned rotation = %s (%s), want %s (%s)", formatTime(at), reason, tc.wantAt, tc.wantReason)
			}
		})
	}
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
		cfg["next_rotation_reason"] != reasonSchedule || !strings.HasSuffix(cfg["next_rotation_at"].(string), "T10:00:00Z") {
		t.Fatalf("schedule not in effect: %v", cfg)
	}
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "100h"}); err != nil {
		t.Fatal(err)
	}
	cfg = env.readConfig(t)
	if cfg["rotation_schedule"] != "" || cfg["rotation_window"] != int64(0) || cfg["rotation_period"] != int64(360000) || cfg["next_rotation_reason"] != reasonPeriod {
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
	if cfg["next_rotation_reason"] != reasonExpiry {
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
	if string(last.Type) != eventRotate || last.Event.Metadata.AsMap()["trigger"] != reasonExpiry {
		t.Fatalf("last event %s %v, want %s with trigger %s", last.Type, last.Event.Metadata.AsMap(), eventRotate, reasonExpiry)
	}
}
