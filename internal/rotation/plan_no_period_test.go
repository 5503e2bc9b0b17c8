package rotation

import (
	"strings"
	"testing"
	"time"
)

// rotation_period 0 with no rotation_schedule (Vault's "not set" for both): no rotation by age or
// slot, only at the expiry deadline; nothing at all for a token without exp.
func TestPlanWithoutPeriodOrScheduleRotatesOnlyAtTheExpiryDeadline(t *testing.T) {
	set := Settings{RequestTimeout: 30 * time.Second}
	month := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-31T00:00:00Z")}
	at, reason := Plan(set, Status{}, month, utc("2026-12-01T00:01:00Z"))
	if FormatTime(at) != "2026-12-30T00:00:00Z" || reason != ReasonExpiry {
		t.Fatalf("30-day token, no period, no schedule: planned %s (%s), want 2026-12-30T00:00:00Z (%s)", FormatTime(at), reason, ReasonExpiry)
	}
	if at, reason := Plan(set, Status{}, Token{IssuedAt: month.IssuedAt}, utc("2026-12-01T00:01:00Z")); !at.IsZero() || reason != "" {
		t.Fatalf("token without exp, no period, no schedule: planned %s (%s), want nothing", FormatTime(at), reason)
	}
}

// The write's warning names the deadline, or says that nothing rotates a token without exp; it
// is silent when a period or a schedule is set or automated rotation is off.
func TestNoPolicyWarningSaysWhatStillRotatesTheToken(t *testing.T) {
	month := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-31T00:00:00Z")}
	none := Settings{RequestTimeout: 30 * time.Second}
	cases := []struct {
		name string
		set  Settings
		tok  Token
		want string
	}{
		{"neither: the deadline", none, month, "rotated only at 2026-12-30T00:00:00Z, 24h0m0s before it expires"},
		{"neither, no exp: nothing", none, Token{IssuedAt: month.IssuedAt}, "nothing rotates it on its own"},
		{"a period", Settings{RotationPeriod: time.Hour}, month, ""},
		{"a schedule", Settings{RotationSchedule: "0 10 * * 2"}, month, ""},
		{"automated rotation off", Settings{DisableAutomatedRotation: true}, month, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := NoPolicyWarning(tc.set, tc.tok, "inabit-admin/")
			if tc.want == "" && got != "" || tc.want != "" && !(strings.Contains(got, tc.want) && strings.Contains(got, "inabit-admin/config")) {
				t.Fatalf("warning = %q, want one containing %q and naming inabit-admin/config", got, tc.want)
			}
		})
	}
}
