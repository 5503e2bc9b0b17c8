package rotation

import (
	"testing"
	"time"
)

// ReserveUrgent caps the wait it hands out at maxWait but still pushes nextStart on by a
// spacing from wherever it already was: every urgent booking moves the pace further into the
// future, however far ahead it already is. An expiry-only herd (rotation_period=0, or tokens past
// their deadline retrying each tick) under a rate limit books ten urgent starts a tick at the
// one-minute spacing: nextStart runs hours ahead. Long after inabit went quiet (the spacing is
// forgotten) no scheduled rotation of that url can book a start for hours, and every urgent one
// waits the full maxWait for nothing (TestPacerBookingsDoNotRunAway covers Reserve only).
func TestPacerUrgentBookingsDoNotRunAway(t *testing.T) {
	p := NewPacer()
	now := time.Minute
	for tick := 0; tick < 30; tick++ {
		for i := 0; i < 10; i++ {
			if w := p.ReserveUrgent(now, 20*time.Second); w > 20*time.Second {
				t.Fatalf("setup: urgent wait %s", w)
			}
		}
		p.RateLimited(now, 0)
		now += time.Minute
	}
	now += 11 * time.Minute // no 429 for 11 minutes: inabit is fine again
	w, ok := p.Reserve(now, 20*time.Second)
	if p.Spacing() != PaceSpacing {
		t.Fatalf("setup: spacing %s not forgotten", p.Spacing())
	}
	uw := p.ReserveUrgent(now+time.Hour, 20*time.Second)
	if !ok || w > 0 || uw > 0 {
		t.Fatalf("11 min after the last 429: a scheduled start waits %s (ok %v); an urgent one an hour later still waits %s",
			w, ok, uw)
	}
}
