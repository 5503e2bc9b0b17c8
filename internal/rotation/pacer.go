package rotation

import (
	"sync"
	"time"
)

// Pacing a herd. Refresh slots bound how many rotations talk to inabit at once, but each takes a
// few milliseconds and Vault ticks every mount in the same second, so without pacing every
// rotation due in a minute reaches inabit within that second: 500 mounts spread over 15 minutes
// still put 30-odd rotations (two or three calls each) into one second, and an API that allows
// ten calls a second refuses most of them. A Pacer spaces the starts of a process's scheduled
// rotations and, when inabit answers 429, holds them all for as long as it asks.
//
// Times are durations on one monotonic clock (the caller's); a Pacer never reads a clock.

const (
	// PaceSpacing is the usual gap between two scheduled rotations' starts: two a second, each a
	// refresh and the access-token call that proves the new token (a probe too, at times), so a
	// herd stays near five calls a second.
	PaceSpacing = 500 * time.Millisecond
	// MaxPaceSpacing bounds the gap however often inabit says 429.
	MaxPaceSpacing = time.Minute
	// MinRateLimitHold and MaxRateLimitHold bound how long a 429 holds scheduled rotations: a
	// 429 without Retry-After holds a second; a Retry-After of days holds ten minutes (rotations
	// happen long before expiry, and the expiry deadline is never held).
	MinRateLimitHold = time.Second
	MaxRateLimitHold = 10 * time.Minute
)

// Pacer is safe for concurrent use. The zero value is not ready: use NewPacer.
type Pacer struct {
	mu          sync.Mutex
	spacing     time.Duration
	nextStart   time.Duration // no scheduled rotation starts before this
	holdUntil   time.Duration // a 429 asked us to send nothing scheduled before this
	lastLimited time.Duration // when the last 429 arrived
	limited     bool          // a 429 has arrived
}

// NewPacer returns a Pacer at its usual spacing with nothing booked.
func NewPacer() *Pacer { return &Pacer{spacing: PaceSpacing} }

// Reserve books the earliest start at or after now that keeps the spacing after the last booked
// start and waits out any 429 hold, and returns how long to wait for it. When that is more than
// maxWait away it books nothing and ok is false: the rotation is left to a later tick.
func (p *Pacer) Reserve(now, maxWait time.Duration) (wait time.Duration, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetOldLimitsLocked(now)
	start := max(now, p.nextStart, p.holdUntil)
	if start-now > maxWait {
		return 0, false
	}
	p.nextStart = start + p.spacing
	return start - now, true
}

// ReserveUrgent books a start for a rotation at its expiry deadline, which nothing may hold back
// for long: it keeps the spacing, so that a herd at its deadline does not stampede either, but
// ignores any 429 hold and never waits more than maxWait.
func (p *Pacer) ReserveUrgent(now, maxWait time.Duration) (wait time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetOldLimitsLocked(now)
	start := min(max(now, p.nextStart), now+max(maxWait, 0))
	// A start capped at maxWait takes no place after the ones already booked: pushing nextStart
	// on from there, an urgent herd would book the pace hours ahead.
	p.nextStart = max(p.nextStart, start+p.spacing)
	return start - now
}

// forgetOldLimitsLocked brings the spacing back to PaceSpacing once MaxRateLimitHold has passed
// without a 429: a burst of them yesterday says nothing about today's limit.
func (p *Pacer) forgetOldLimitsLocked(now time.Duration) {
	if p.limited && now >= p.lastLimited+MaxRateLimitHold {
		p.spacing, p.limited = PaceSpacing, false
	}
}

// Idle says whether p holds nothing worth keeping at now: no hold, no booked start ahead, the
// usual spacing. Forgetting an idle pacer changes nothing.
func (p *Pacer) Idle(now time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.forgetOldLimitsLocked(now)
	return now >= p.holdUntil && now >= p.nextStart && p.spacing == PaceSpacing
}

// Held says whether a 429 holds scheduled rotations at now: one booked before the 429 arrived
// must look again when its wait is over.
func (p *Pacer) Held(now time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return now < p.holdUntil
}

// RateLimited records a 429 seen at now, with its Retry-After (0 when absent): every scheduled
// rotation is held for it, bounded by MinRateLimitHold and MaxRateLimitHold, and the spacing
// doubles, up to MaxPaceSpacing, since the usual pace was too fast for this API. A burst of 429s
// (many reads refused in the same second) is one signal: only a 429 that arrives after the hold
// is over doubles the spacing again.
func (p *Pacer) RateLimited(now, retryAfter time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now >= p.holdUntil {
		p.spacing = min(2*p.spacing, MaxPaceSpacing)
	}
	hold := min(max(retryAfter, MinRateLimitHold), MaxRateLimitHold)
	p.holdUntil = max(p.holdUntil, now+hold)
	p.lastLimited, p.limited = max(p.lastLimited, now), true
}

// Succeeded records a paced rotation that met no 429: the spacing shrinks back toward
// PaceSpacing by a sixteenth of the difference (and a millisecond, so that it gets there). Slow
// on purpose: an API whose limit is below the usual pace would otherwise refuse a call every
// dozen rotations; this way one 429 in fifty or so. A herd that met one 429 by chance is back at
// the usual pace within a hundred rotations, or MaxRateLimitHold after the last 429.
func (p *Pacer) Succeeded() {
	p.mu.Lock()
	defer p.mu.Unlock()
	excess := p.spacing - PaceSpacing
	p.spacing = max(PaceSpacing+excess-excess/16-time.Millisecond, PaceSpacing)
}

// Spacing is the current gap between scheduled starts (for status and tests).
func (p *Pacer) Spacing() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.spacing
}
