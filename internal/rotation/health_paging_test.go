package rotation

import (
	"testing"
	"time"
)

// (health, issue 18.6) A refresh whose outcome stays unknown because inabit cannot be
// asked (a proxy answering 502 for hours, a broken route) keeps the status "pending": the settle
// probe runs every tick and notePending neither counts failures nor moves LastRotationErrorAt.
// HealthOf checks OutcomeCheckAt before RotationFailures, so neither escalation of "retrying"
// (6 failures, or the expiry deadline passed) ever applies: needs_human stays false until the
// token has expired, when it is too late for a human to do anything but ask inabit support for a
// new token. A pending outcome past the expiry deadline needs a human exactly as much as a
// failing retry does.
func TestHealth_PendingPastTheExpiryDeadlineNeedsAHuman(t *testing.T) {
	exp := utc("2026-12-31T00:00:00Z")
	tok := Token{IssuedAt: exp.Add(-30 * 24 * time.Hour), ExpiresAt: exp}
	set := Settings{RotationPeriod: 0, RequestTimeout: 30 * time.Second, RefreshGracePeriod: 10 * time.Minute}
	deadline := ExpiryDeadline(tok, set.Budget()) // exp - 24h: the only rotation rotation_period=0 plans
	now := exp.Add(-time.Hour)                    // 23 h after the refresh at the deadline got no answer
	st := Status{
		// What the backend leaves after a refresh at the deadline got a proxy's 502 and every settle
		// probe since got one too: two failures (the refresh, the first settle miss), the check time
		// moved to the next tick by notePending, LastRotationErrorAt at the first settle miss.
		LastRotationError:   "the login-token refresh started at ... got no answer, and inabit cannot be asked whether it was applied (inabit is unavailable (HTTP 502): ...)",
		LastRotationErrorAt: deadline.Add(12 * time.Minute),
		RotationFailures:    2,
		OutcomeCheckAt:      now.Add(TickInterval),
	}
	h := HealthOf(set, st, tok, now, "inabit/")
	if !h.NeedsHuman {
		t.Fatalf("1 h before the login token expires, 23 h after its only planned rotation got no answer and inabit has not been "+
			"reachable since: health = %+v; a monitor hears nothing until the token is dead", h)
	}
}

// (health x rotation_period=0, issues 18.5 and 18.6) With rotation_period=0 the only
// rotation planned is at the expiry deadline, so the first attempt is the one at the deadline.
// One retryable failure there (a 429, a refused connection: "the login token is unchanged and
// still valid; retrying later") is retried at the next tick and has the whole expiry margin (24 h
// for a 30-day token) to succeed, yet HealthOf pages at once: "retrying" with the deadline passed
// is needs_human whatever the failure count and however much of the margin is left. Every
// mount configured as Vault's "not set" pages a human on every transient failure of every
// rotation: a false alarm for a condition that heals itself a minute later.
func TestHealth_OneRetryableFailureAtTheDeadlineOfANoPeriodMountIsNoPage(t *testing.T) {
	exp := utc("2026-12-31T00:00:00Z")
	tok := Token{IssuedAt: exp.Add(-30 * 24 * time.Hour), ExpiresAt: exp}
	set := Settings{RotationPeriod: 0, RequestTimeout: 30 * time.Second, RefreshGracePeriod: 10 * time.Minute}
	deadline := ExpiryDeadline(tok, set.Budget())
	if next, reason := Plan(set, Status{}, tok, deadline.Add(-time.Hour)); !next.Equal(deadline) || reason != ReasonExpiry {
		t.Fatalf("setup: rotation_period=0 plans %s (%s), want the expiry deadline %s", next, reason, deadline)
	}
	now := deadline.Add(time.Minute)
	st := Status{
		LastRotationError:   "refreshing the login token failed (inabit rate-limited the request (HTTP 429)); the login token is unchanged and still valid; retrying later",
		LastRotationErrorAt: now,
		RotationFailures:    1,
	}
	h := HealthOf(set, st, tok, now, "inabit/")
	if h.NeedsHuman {
		t.Fatalf("one 429 at the deadline of a rotation_period=0 mount, 23 h 59 m before exp, retried next tick: health = %+v (a page)", h)
	}
}
