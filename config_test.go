package inabit

// Tests of config.go: the rotation schedule against the login token's lifetime.

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
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
