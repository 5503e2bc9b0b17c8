package rotation

import (
	"testing"
	"time"
)

// with rotation_schedule and rotation_window, ScheduledAt returns the latest missed
// slot, and Plan adds the spread to it. When the schedule fires more often than the spread (every
// 5 minutes, spread 14 minutes), each new slot becomes "the latest missed slot" before the
// spread has run out: the planned time keeps moving 5 minutes ahead of now and a tick never finds
// the rotation due. Without an exp the token is never rotated; with one it waits for the expiry
// deadline (days later, all mounts of the herd at once, reason "expiry").
func TestSpreadNeverOutrunsAFrequentScheduleWithAWindow(t *testing.T) {
	set := Settings{RotationSchedule: "*/5 * * * *", RotationWindow: time.Hour}
	if w := SpreadWindow(set); w != MaxSpread {
		t.Fatalf("spread window %s", w)
	}
	stored := utc("2026-12-01T12:02:00Z")
	for _, tc := range []struct {
		name string
		tok  Token
	}{
		{"no exp", Token{StoredAt: stored, Spread: 14 * time.Minute}},
		{"30-day token", Token{StoredAt: stored, IssuedAt: stored, ExpiresAt: stored.Add(30 * 24 * time.Hour), Spread: 14 * time.Minute}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Without the spread the first tick after 12:05 rotates; with it, by 12:05 + 14 min.
			limit := utc("2026-12-01T12:05:00Z").Add(tc.tok.Spread + TickInterval)
			var next time.Time
			var reason Reason
			for now := stored; now.Before(stored.Add(48 * time.Hour)); now = now.Add(TickInterval) {
				next, reason = Plan(set, Status{}, tc.tok, now)
				if !next.IsZero() && !now.Before(next) {
					if now.After(limit) {
						t.Fatalf("first due at %s (%s), want by %s", now.Format(time.RFC3339), reason, limit.Format(time.RFC3339))
					}
					return
				}
			}
			t.Fatalf("no tick in 48 hours found the rotation due; the last plan was %s (%s)", next.Format(time.RFC3339), reason)
		})
	}
}

// the spread is applied to the policy's due time and then capped by the expiry
// deadline, which itself is never spread; and at the deadline the process's refresh slots are
// bypassed. So whenever the deadline comes before period + spread (a rotation_period the config
// accepts: shorter than the lifetime, but within its last quarter / last day), every token of a
// herd issued together is planned for the same minute, and all of them go to inabit at once,
// without slots: the herd the change was meant to prevent. Spreading before the deadline
// (deadline - spread) would keep them apart without ever passing it.
func TestAHerdPlannedAtTheExpiryDeadlineIsStillSpread(t *testing.T) {
	iat := utc("2026-12-01T00:00:00Z")
	set := Settings{RotationPeriod: 719 * time.Hour} // 30-day tokens: accepted (shorter than 720h)
	perMinute := map[time.Time]int{}
	for key := uint64(0); key < 500; key++ {
		tok := Token{IssuedAt: iat, ExpiresAt: iat.Add(720 * time.Hour), StoredAt: iat,
			Spread: Spread(set, key*0x9E3779B97F4A7C15, 500)}
		next, _ := Plan(set, Status{}, tok, iat.Add(time.Hour))
		perMinute[next.Truncate(time.Minute)]++
	}
	for m, n := range perMinute {
		if n > 100 {
			t.Errorf("%d of 500 mounts' rotations planned for the minute %s", n, m.Format(time.RFC3339))
		}
	}
}
