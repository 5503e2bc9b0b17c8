package rotation

import (
	"fmt"
	"time"
)

// Health answers the one question a monitor asks: does this mount need a human? LOST is
// permanent and only inabit support can issue a new login token, so an operator must hear of it
// without Vault Enterprise's events; everything that recovers on its own (a retry, an outcome
// being settled) does not page anyone until it stops recovering.

// HealthState names where the mount stands.
type HealthState string

const (
	StateHealthy  HealthState = "healthy"            // the stored token works as far as anyone knows
	StateRetrying HealthState = "retrying"           // the last rotation failed; retries continue
	StatePending  HealthState = "pending"            // a refresh's outcome is being settled
	StateExpiring HealthState = "expiring_unrotated" // automated rotation is off and the token's expiry deadline passed
	StateExpired  HealthState = "expired"            // the login token's exp has passed
	StateLost     HealthState = "lost"               // LOGIN TOKEN LOST
)

// FailuresBeforeHuman is how many rotation failures in a row page a human: with the backoff
// (1, 2, 4, 8, 16 min) that is about half an hour of failing.
const FailuresBeforeHuman = 6

// Health is HealthOf's answer; Reason is empty when the mount is healthy.
type Health struct {
	State      HealthState
	NeedsHuman bool
	Reason     string
}

// HealthOf judges a mount from its stored settings, status and token at now; mount names it in
// reasons ("inabit/").
func HealthOf(set Settings, st Status, tok Token, now time.Time, mount string) Health {
	b := set.Budget()
	deadline := ExpiryDeadline(tok, b)
	deadlinePassed := !deadline.IsZero() && !now.Before(deadline)
	// A rotation still failing (or unsettled) halfway from the expiry deadline to exp pages: the
	// first half is left to retries, which usually succeed within minutes.
	late := deadlinePassed && !now.Before(deadline.Add(ExpiryMargin(tok, b)/2))
	switch {
	case st.LoginTokenLost:
		return Health{StateLost, true, st.LastRotationError}
	case !tok.ExpiresAt.IsZero() && !now.Before(tok.ExpiresAt):
		return Health{StateExpired, true, fmt.Sprintf("the inabit login token expired at %s: write a new login_token to %sconfig",
			FormatTime(tok.ExpiresAt), mount)}
	case !st.OutcomeCheckAt.IsZero():
		h := Health{State: StatePending, Reason: st.LastRotationError}
		if late {
			h.NeedsHuman = true
			h.Reason = fmt.Sprintf("a refresh's outcome is still unknown and the login token expires at %s: %s", FormatTime(tok.ExpiresAt), st.LastRotationError)
		}
		return h
	case st.RotationFailures > 0:
		h := Health{State: StateRetrying, Reason: st.LastRotationError}
		switch {
		case late:
			h.NeedsHuman = true
			h.Reason = fmt.Sprintf("rotation keeps failing and the login token expires at %s: %s", FormatTime(tok.ExpiresAt), st.LastRotationError)
		case st.RotationFailures >= FailuresBeforeHuman:
			h.NeedsHuman = true
			h.Reason = fmt.Sprintf("rotation has failed %d times in a row: %s", st.RotationFailures, st.LastRotationError)
		}
		return h
	case set.DisableAutomatedRotation && deadlinePassed:
		return Health{StateExpiring, true, fmt.Sprintf("automated rotation is disabled and the login token expires at %s: "+
			"write to %srotate-root, or a new login_token to %sconfig", FormatTime(tok.ExpiresAt), mount, mount)}
	}
	return Health{State: StateHealthy}
}
