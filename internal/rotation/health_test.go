package rotation

import (
	"strings"
	"testing"
	"time"
)

// TestHealth_NeedsAHumanExactlyWhenNothingAutomaticWillFixIt: the one field a monitor reads.
func TestHealth_NeedsAHumanExactlyWhenNothingAutomaticWillFixIt(t *testing.T) {
	now := utc("2026-12-10T00:00:00Z")
	month := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-31T00:00:00Z")}
	nearEnd := Token{IssuedAt: utc("2026-11-11T00:00:00Z"), ExpiresAt: utc("2026-12-10T12:00:00Z")} // deadline passed
	period := Settings{RotationPeriod: 360 * time.Hour}
	cases := []struct {
		name      string
		set       Settings
		st        Status
		tok       Token
		wantState HealthState
		wantHuman bool
		reasonHas string
	}{
		{"fresh token", period, Status{}, month, StateHealthy, false, ""},
		{"one failure, retrying", period, Status{RotationFailures: 1, LastRotationError: "inabit is unavailable", LastRotationErrorAt: now}, month, StateRetrying, false, "inabit is unavailable"},
		{"failing for a long time", period, Status{RotationFailures: FailuresBeforeHuman, LastRotationError: "inabit is unavailable", LastRotationErrorAt: now}, month, StateRetrying, true, "failed 6 times"},
		{"failing past the expiry deadline", period, Status{RotationFailures: 1, LastRotationError: "boom", LastRotationErrorAt: now}, nearEnd, StateRetrying, true, "expires at 2026-12-10T12:00:00Z"},
		{"outcome being settled", period, Status{OutcomeCheckAt: now.Add(time.Minute), LastRotationError: "in flight"}, month, StatePending, false, "in flight"},
		{"lost", period, Status{LoginTokenLost: true, LastRotationError: "LOGIN TOKEN LOST: write a new login_token to inabit/config"}, month, StateLost, true, "LOGIN TOKEN LOST"},
		{"expired", period, Status{}, Token{IssuedAt: utc("2026-11-01T00:00:00Z"), ExpiresAt: utc("2026-12-01T00:00:00Z")}, StateExpired, true, "expired at 2026-12-01T00:00:00Z"},
		{"automated rotation off, deadline passed", Settings{DisableAutomatedRotation: true}, Status{}, nearEnd, StateExpiring, true, "automated rotation is disabled"},
		{"automated rotation off, far from expiry", Settings{DisableAutomatedRotation: true}, Status{}, month, StateHealthy, false, ""},
		{"token without exp", period, Status{}, Token{StoredAt: now}, StateHealthy, false, ""},
	}
	for _, tc := range cases {
		h := HealthOf(tc.set, tc.st, tc.tok, now, "inabit/")
		if h.State != tc.wantState || h.NeedsHuman != tc.wantHuman || !strings.Contains(h.Reason, tc.reasonHas) {
			t.Errorf("%s: %+v, want state %s, needs_human %v, reason containing %q", tc.name, h, tc.wantState, tc.wantHuman, tc.reasonHas)
		}
		if tc.wantState == StateHealthy && h.Reason != "" {
			t.Errorf("%s: healthy with a reason %q", tc.name, h.Reason)
		}
		if h.NeedsHuman && !strings.Contains(h.Reason, "inabit/") && tc.wantState != StateRetrying {
			t.Errorf("%s: a reason that needs a human must say where to act: %q", tc.name, h.Reason)
		}
	}
}
