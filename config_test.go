package inabit

// Tests of config.go: the rotation schedule against the login token's lifetime.

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// A rotated token living shorter than rotation_period is scheduled at or before exp - margin and
// rotated then (issue 8 defect 4: the schedule ignored exp).
func TestTokenLivingShorterThanRotationPeriodIsRotatedBeforeItExpires(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil) // rotation_period 360h, a 30-day token
	env.mock.SetTTLs(2*time.Hour, 0)
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	cfg := env.readConfig(t)
	iat := parseTimeField(t, "login_token_issued_at", cfg["login_token_issued_at"])
	exp := parseTimeField(t, "login_token_expires_at", cfg["login_token_expires_at"])
	next := parseTimeField(t, "next_rotation_at", cfg["next_rotation_at"])
	margin := min(24*time.Hour, exp.Sub(iat)/4)
	if next.After(exp.Add(-margin)) {
		t.Fatalf("next_rotation_at = %s, want at or before exp - %s = %s (the token expires at %s)",
			formatTime(next), margin, formatTime(exp.Add(-margin)), formatTime(exp))
	}

	rotated := storedToken(t, env)
	env.clock.advance(next.Sub(env.clock.now()) + time.Second)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 2 {
		t.Fatalf("refresh calls = %d at next_rotation_at, want 2", got)
	}
	if got := storedToken(t, env); got == rotated || !env.mock.LoginTokenValid(got) {
		t.Fatal("the short-lived token was not rotated before it expired")
	}
}

// A token with exp but no iat is scheduled at or before exp - margin (issue 8 defect 4).
func TestTokenWithExpButNoIatIsRotatedBeforeExpMinusMargin(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	born := env.clock.now()
	exp := born.Add(2 * time.Hour).Truncate(time.Second)
	tok := makeJWT(t, jwt.MapClaims{"sub": "api-user", "exp": exp.Unix()})
	// 105m passes any "shorter than the token's life" check, yet ends after exp - margin (90m).
	env.configure(t, map[string]interface{}{"login_token": tok, "verify_connection": false, "rotation_period": "105m"})
	next := parseTimeField(t, "next_rotation_at", env.readConfig(t)["next_rotation_at"])
	margin := min(24*time.Hour, exp.Sub(born)/4)
	if !next.Before(exp) || next.After(exp.Add(-margin+time.Second)) {
		t.Fatalf("token with exp %s and no iat: next_rotation_at = %s, want at or before exp - %s = %s",
			formatTime(exp), formatTime(next), margin.Round(time.Second), formatTime(exp.Add(-margin)))
	}
}

// Issue 11: "a schedule whose slots are further apart than the login token's lifetime is a 400
// that says so", also for a schedule that fires in bursts ("every minute on Tuesdays", "every
// minute on the 1st"): hundreds of slots one minute apart, then a gap of days. (The review found
// maxSlotGap looking at the next 500 slots only, accepting it for a token that dies between two
// bursts.)
func TestBurstScheduleWithGapsLongerThanTokenLifeIsRefused(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	// Monday 2027-03-01 12:00 UTC on both clocks.
	env.clock.advance(time.Until(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)))
	cases := []struct {
		schedule string
		life     time.Duration
	}{
		{"* * * * 2", 5 * 24 * time.Hour},  // Tuesdays only: 6 days between the last and next slot
		{"* * 1 * *", 10 * 24 * time.Hour}, // the 1st of the month only: ~30 days apart
	}
	for _, tc := range cases {
		now := env.clock.now()
		tok := makeJWT(t, jwt.MapClaims{"sub": "api-user", "iat": now.Unix(), "exp": now.Add(tc.life).Unix()})
		resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
			"login_token": tok, "url": env.srv.URL, "verify_connection": false, "rotation_schedule": tc.schedule})
		if err == nil && !resp.IsError() {
			next := env.readConfig(t)["next_rotation_at"]
			t.Errorf("rotation_schedule %q accepted for a login token living %s, though its slots are days apart "+
				"(true largest gap %s); next_rotation_at %v", tc.schedule, tc.life,
				trueScheduleGap(t, tc.schedule, now), next)
		}
	}
}

// trueScheduleGap is the largest gap between the 100 000 slots of expr that follow from.
func trueScheduleGap(t *testing.T, expr string, from time.Time) time.Duration {
	s, err := rotation.ParseSchedule(expr)
	if err != nil {
		t.Fatal(err)
	}
	var gap time.Duration
	prev := s.Next(from.UTC())
	for i := 0; i < 100000; i++ {
		next := s.Next(prev)
		gap = max(gap, next.Sub(prev))
		prev = next
	}
	return gap
}

// "0 0 30 2 *" (February 30th) is a valid cron expression that never fires. It is refused (a 400
// that quotes it) also for a login token without exp. (The review found applySchedule letting it
// through -- the gap check only ran when the token had a lifetime -- so automated rotation was
// silently off and next_rotation_at empty.)
func TestNeverFiringScheduleIsRefusedForTokenWithoutExp(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tok := makeJWT(t, jwt.MapClaims{"sub": "api-user", "iat": env.clock.now().Unix()})
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": tok, "url": env.srv.URL, "verify_connection": false, "rotation_schedule": "0 0 30 2 *"})
	if err == nil && !resp.IsError() {
		cfg := env.readConfig(t)
		t.Fatalf("rotation_schedule \"0 0 30 2 *\" (never fires) accepted: next_rotation_at %q, next_rotation_reason %q, disable_automated_rotation %v",
			cfg["next_rotation_at"], cfg["next_rotation_reason"], cfg["disable_automated_rotation"])
	}
}

// inabit starts minting 2-hour login tokens (SetTTLs); rotation_period stays 360h, which the
// contract handles (next rotation = min(born + period, exp - margin)). A config write of another
// field -- here only access_token_min_ttl -- is accepted. (The review found every such write a
// 400 about rotation_period, a field the request did not carry.)
func TestConfigWriteNotTouchingTheScheduleIsNeverRefusedForIt(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.SetTTLs(2*time.Hour, 0)
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"access_token_min_ttl": "5m"})
	if err != nil || resp.IsError() {
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			msg = resp.Error().Error()
		}
		t.Fatalf("a write of access_token_min_ttl alone was refused: %s", msg)
	}
}

// 15.12 (mutation expiry-margin-ignores-tick): a login token too short-lived to be rotated in
// time is warned about at config write and on reads, and rotated at the first tick.
func TestTooShortLivedTokenIsWarnedAndRotatedAtOnce(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 150 * time.Second})
	resp, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken(), "url": env.srv.URL, "rotation_period": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil || len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "too short") {
		t.Fatalf("config write of a 150 s token: no warning (%v)", resp)
	}
	if w := env.readToken(t).Warnings; len(w) == 0 || !strings.Contains(strings.Join(w, " "), "too short") {
		t.Fatalf("token read: no warning (%v)", w)
	}
	env.clock.advance(30 * time.Second)
	env.tick(t)
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("a 150 s token was not rotated at the first tick")
	}
}

// Issue 17: refused config writes of long (legal) schedules left every parsed expression in a
// process-wide memo, 40 writes of 100 kB keeping 4.2 MB for the life of the plugin. Such a
// write is now refused before parsing, with a 400 naming the field and the limit, and the heap
// does not grow.
func TestRefusedScheduleWritesKeepNoMemory(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil) // a 30-day token: a yearly schedule is refused
	heap := func() uint64 {
		var m runtime.MemStats
		runtime.GC()
		runtime.GC()
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	badMessage := ""
	for i := 0; i < 40; i++ {
		// Yearly at 00:00 on January 1st, the minute written out 50 000 times (100 kB).
		expr := fmt.Sprintf("0%s %d 1 1 *", strings.Repeat(",0", 50_000), i%24)
		resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"rotation_schedule": expr})
		if err != nil || !resp.IsError() {
			t.Fatalf("a %d-byte yearly rotation_schedule was not a 400: resp=%v err=%v", len(expr), resp, err)
		}
		if msg := resp.Error().Error(); !strings.Contains(msg, "rotation_schedule") || len(msg) > 1000 {
			badMessage = msg
		}
	}
	grown := int64(heap()) - int64(before)
	if grown > 1<<20 {
		t.Errorf("40 refused rotation_schedule writes of 100 kB grew the live heap by %d bytes", grown)
	}
	t.Logf("40 refused writes of 100 kB: live heap grew by %d bytes", grown)
	if badMessage != "" {
		t.Errorf("the 400 does not name rotation_schedule or echoes the expression (%d bytes): %.200s", len(badMessage), badMessage)
	}
}
