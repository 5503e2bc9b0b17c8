package rotation

import (
	"testing"
	"time"
)

// Starts booked in one instant are PaceSpacing apart, and a start further than maxWait away is
// not booked at all (it leaves no gap in the pace for later callers).
func TestPacerSpacesStartsAndBooksNothingBeyondMaxWait(t *testing.T) {
	p := NewPacer()
	now := 100 * time.Second
	for i := 0; i < 5; i++ {
		wait, ok := p.Reserve(now, 2*time.Second)
		if !ok || wait != time.Duration(i)*PaceSpacing {
			t.Fatalf("start %d: wait %s ok %v, want %s", i, wait, ok, time.Duration(i)*PaceSpacing)
		}
	}
	if wait, ok := p.Reserve(now, 2*time.Second); ok {
		t.Fatalf("a sixth start 2.5 s away was booked with maxWait 2 s (wait %s)", wait)
	}
	// The refused booking took nothing: with a little more patience the next start is at 2.5 s.
	if wait, ok := p.Reserve(now, 3*time.Second); !ok || wait != 5*PaceSpacing {
		t.Fatalf("after a refused booking: wait %s ok %v, want %s", wait, ok, 5*PaceSpacing)
	}
}

// A caller arriving after the pace has gone idle starts at once: pacing never delays a lone
// rotation.
func TestPacerLetsALoneRotationStartAtOnce(t *testing.T) {
	p := NewPacer()
	if wait, ok := p.Reserve(time.Hour, 0); !ok || wait != 0 {
		t.Fatalf("first start: wait %s ok %v", wait, ok)
	}
	if wait, ok := p.Reserve(time.Hour+PaceSpacing, 0); !ok || wait != 0 {
		t.Fatalf("start one spacing later: wait %s ok %v", wait, ok)
	}
	if _, ok := p.Reserve(time.Hour+PaceSpacing+time.Millisecond, 0); ok {
		t.Fatal("a start 1 ms after the last one was not made to wait")
	}
}

// A 429 holds every scheduled start for its Retry-After (bounded both ways) and doubles the
// spacing; starts booked before it see the hold when they look again.
func TestPacerHoldsForRetryAfterAndSlowsDown(t *testing.T) {
	for _, c := range []struct {
		retryAfter, hold time.Duration
	}{
		{0, MinRateLimitHold},
		{300 * time.Millisecond, MinRateLimitHold},
		{7 * time.Second, 7 * time.Second},
		{MaxRateLimitHold, MaxRateLimitHold},
		{48 * time.Hour, MaxRateLimitHold},
	} {
		p := NewPacer()
		now := 10 * time.Second
		p.RateLimited(now, c.retryAfter)
		if !p.Held(now+c.hold-time.Nanosecond) || p.Held(now+c.hold) {
			t.Fatalf("Retry-After %s: held until %s? want exactly %s", c.retryAfter, c.hold, c.hold)
		}
		if wait, ok := p.Reserve(now, c.hold); !ok || wait != c.hold {
			t.Fatalf("Retry-After %s: wait %s ok %v, want %s", c.retryAfter, wait, ok, c.hold)
		}
		if _, ok := p.Reserve(now, c.hold); ok {
			t.Fatalf("Retry-After %s: a second start inside the hold's end was booked", c.retryAfter)
		}
		if p.Spacing() != 2*PaceSpacing {
			t.Fatalf("spacing after one 429: %s, want %s", p.Spacing(), 2*PaceSpacing)
		}
	}
	// A shorter hold never cuts a longer one short.
	p := NewPacer()
	p.RateLimited(0, time.Minute)
	p.RateLimited(time.Second, 0)
	if !p.Held(59 * time.Second) {
		t.Fatal("a 1 s hold cut a 60 s hold short")
	}
}

// Repeated 429s slow the pace to MaxPaceSpacing at most; rotations that meet none bring it back
// to PaceSpacing exactly, slowly: after twenty it is still above, after a hundred back.
func TestPacerSpacingGrowsBoundedAndComesBack(t *testing.T) {
	p := NewPacer()
	for i := 0; i < 20; i++ {
		p.RateLimited(time.Duration(i)*MinRateLimitHold, 0)
	}
	if p.Spacing() != MaxPaceSpacing {
		t.Fatalf("spacing after 20 429s: %s, want %s", p.Spacing(), MaxPaceSpacing)
	}
	p = NewPacer()
	p.RateLimited(0, 0)
	n := 0
	for ; p.Spacing() > PaceSpacing; n++ {
		before := p.Spacing()
		p.Succeeded()
		if p.Spacing() >= before {
			t.Fatalf("spacing %s did not shrink (was %s)", p.Spacing(), before)
		}
	}
	if p.Spacing() != PaceSpacing || n < 20 || n > 100 {
		t.Fatalf("spacing back to %s after %d successes, want %s after 20..100", p.Spacing(), n, PaceSpacing)
	}
	p.Succeeded()
	if p.Spacing() != PaceSpacing {
		t.Fatalf("spacing fell below PaceSpacing: %s", p.Spacing())
	}
}

// A burst of 429s inside one hold (a hundred reads refused in the same second) slows the pace
// once, not a hundred times; the next 429 after the hold slows it again.
func TestPacerCountsABurstOf429sAsOneSignal(t *testing.T) {
	p := NewPacer()
	for i := 0; i < 100; i++ {
		p.RateLimited(time.Duration(i)*time.Millisecond, 0)
	}
	if p.Spacing() != 2*PaceSpacing {
		t.Fatalf("spacing after a burst of 100 429s in 100 ms: %s, want %s", p.Spacing(), 2*PaceSpacing)
	}
	p.RateLimited(99*time.Millisecond+MinRateLimitHold, 0)
	if p.Spacing() != 4*PaceSpacing {
		t.Fatalf("spacing after a 429 once the hold was over: %s, want %s", p.Spacing(), 4*PaceSpacing)
	}
}

// Bookings of ticks that then skip never push the pace more than maxWait+spacing ahead, and
// eleven minutes after the last 429 a start waits for nothing.
func TestPacerBookingsDoNotRunAway(t *testing.T) {
	p := NewPacer()
	now := time.Duration(0)
	for tick := 0; tick < 100; tick++ {
		for i := 0; i < 500; i++ {
			p.Reserve(now, 20*time.Second)
		}
		p.RateLimited(now, 10*time.Minute)
		now += time.Minute
	}
	now += 11 * time.Minute
	if w, ok := p.Reserve(now, 20*time.Second); !ok || w > 0 {
		t.Fatalf("11 min after the last 429, a reservation waits %s (ok %v)", w, ok)
	}
}

// A quiet MaxRateLimitHold after the last 429 brings the spacing back to PaceSpacing: a burst
// yesterday does not slow today's herd.
func TestPacerForgetsOld429s(t *testing.T) {
	p := NewPacer()
	p.RateLimited(0, 0)
	p.RateLimited(2*time.Second, 0)
	if p.Spacing() != 4*PaceSpacing {
		t.Fatalf("setup: spacing %s", p.Spacing())
	}
	if _, ok := p.Reserve(2*time.Second+MaxRateLimitHold-time.Second, time.Minute); !ok || p.Spacing() != 4*PaceSpacing {
		t.Fatalf("spacing forgotten before a quiet MaxRateLimitHold: %s", p.Spacing())
	}
	p.Reserve(2*time.Second+MaxRateLimitHold, time.Minute)
	if p.Spacing() != PaceSpacing {
		t.Fatalf("spacing a quiet MaxRateLimitHold after the last 429: %s, want %s", p.Spacing(), PaceSpacing)
	}
}

// A rotation at its expiry deadline keeps the pace but ignores any hold and never waits more
// than maxWait; it still takes its place, so the next start waits for it.
func TestPacerUrgentStartsKeepThePaceButNeverWaitLong(t *testing.T) {
	p := NewPacer()
	now := 100 * time.Second
	p.RateLimited(now, MaxRateLimitHold)
	if w := p.ReserveUrgent(now, 20*time.Second); w != 0 {
		t.Fatalf("first urgent start under a hold waits %s, want 0", w)
	}
	if w := p.ReserveUrgent(now, 20*time.Second); w != 2*PaceSpacing {
		t.Fatalf("second urgent start waits %s, want the (doubled) spacing %s", w, 2*PaceSpacing)
	}
	for i := 0; i < 100; i++ {
		if w := p.ReserveUrgent(now, 20*time.Second); w > 20*time.Second {
			t.Fatalf("urgent start %d waits %s, more than maxWait", i, w)
		}
	}
	if w := p.ReserveUrgent(now, -time.Second); w != 0 {
		t.Fatalf("urgent start with a negative maxWait waits %s", w)
	}
}
