package inabit

// Tests of login_state.go: what a node remembers of inabit's answers to reads.

import (
	"strings"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// 15.5 (mutation confirm-read-rejection-skipped): a token inabit rejects on reads (revoked at
// inabit) is stored as LOST, with the event and the warnings, within two ticks.
func TestReadsSeeingInabitRejectTheTokenReportLostWithinTwoTicks(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.IssueLoginToken() // support rotated it outside Vault: the stored token is dead
	if err := env.readTokenErr(); err == nil {
		t.Fatal("a read with a revoked token succeeded")
	}
	env.tick(t) // the same second: one answer might be a glitch
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true {
		t.Fatal("LOST recorded on one answer")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	cfg := env.readConfig(t)
	if cfg["login_token_lost"] != true || !strings.HasPrefix(cfg["last_rotation_error"].(string), "LOGIN TOKEN LOST") {
		t.Fatalf("a token inabit rejects twice is not reported: lost %v, status %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	if !lostEventSent(env) {
		t.Fatal("no lost event")
	}
	if err := env.readTokenErr(); err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("reads after LOST: %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("a dead token was refreshed")
	}
}

// A rejection inabit takes back (the next answer issues a token) is not reported.
func TestOneRejectionThatInabitTakesBackIsNotLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "glitch", Times: 1})
	if err := env.readTokenErr(); err == nil {
		t.Fatal("setup: the glitch did not reach the read")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true || cfg["last_rotation_error"] != "" {
		t.Fatalf("a glitch was reported: %v %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	env.readToken(t)
}
