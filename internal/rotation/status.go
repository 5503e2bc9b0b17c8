package rotation

import "time"

// Settings are the config fields the protocol reads. The root package embeds them in its stored
// config, so their JSON names are the stored format and must not change.
type Settings struct {
	// RotationPeriod: rotate once the token is this old. Zero with no RotationSchedule (Vault's
	// "not set" for both): Plan plans only the expiry deadline.
	RotationPeriod time.Duration `json:"rotation_period"`
	// RotationSchedule (cron, UTC) replaces RotationPeriod when set; RotationPeriod is then zero.
	RotationSchedule string `json:"rotation_schedule,omitempty"`
	// RotationWindow limits catching up a missed rotation_schedule slot (ScheduledAt) to while the
	// latest missed slot is less than this ago; zero catches up any.
	RotationWindow time.Duration `json:"rotation_window,omitempty"`
	// ScheduleSetAt is when rotation_schedule was last written: slots before it are not missed.
	ScheduleSetAt time.Time `json:"rotation_schedule_set_at,omitempty"`
	// DisableAutomatedRotation: Plan plans no rotation; only rotate-root rotates.
	DisableAutomatedRotation bool `json:"disable_automated_rotation"`
	// RequestTimeout bounds one HTTP exchange with inabit (Budget.RequestTimeout).
	RequestTimeout time.Duration `json:"request_timeout"`
	// RefreshGracePeriod is how long inabit may still apply a refresh after our call gave up
	// (Budget.Grace).
	RefreshGracePeriod time.Duration `json:"refresh_grace_period"`
}

// Budget is the timing these settings give the mount's calls.
func (s Settings) Budget() Budget {
	return Budget{RequestTimeout: s.RequestTimeout, Grace: s.RefreshGracePeriod}
}

// Status is the rotation status of the stored login token, embedded flat in the stored config.
// The zero Status is healthy.
type Status struct {
	// LastRotationError is the operator's message: Message of the last failed rotation, or
	// InFlightMessage while a refresh's answer is not yet saved.
	LastRotationError string `json:"last_rotation_error,omitempty"`
	// LastRotationErrorAt is when it was recorded (the refresh's start, for InFlightMessage).
	LastRotationErrorAt time.Time `json:"last_rotation_error_at,omitempty"`
	// RotationFailures counts the failures since the status was last cleared; it sets the
	// backoff (RetryDelay).
	RotationFailures int `json:"rotation_failures,omitempty"`
	// LoginTokenLost is sticky: the stored token is known dead and nothing is sent with it until
	// an operator writes a login token that works.
	LoginTokenLost bool `json:"login_token_lost,omitempty"`
	// OutcomeCheckAt is set while a refresh's outcome is unknown: when it is expected to be
	// settled. Shown as next_rotation_at; the settling itself is timed on the monotonic clock.
	OutcomeCheckAt time.Time `json:"outcome_check_at,omitempty"`
	// RetryNotBefore is inabit's Retry-After on a declined refresh, at most MaxRetryAfter ahead.
	RetryNotBefore time.Time `json:"retry_not_before,omitempty"`
	// ProbeBeforeRefresh: inabit rejected the token and could not be asked again whether it
	// works. Every refresh is preceded by a probe anyway; this keeps the status honest.
	ProbeBeforeRefresh bool `json:"probe_before_refresh,omitempty"`
}

// Apply records o in the status and reports whether anything changed. LOST is sticky: nothing
// but another Lost replaces it (an operator's new login token clears the whole status).
func (st *Status) Apply(o Outcome, message string, now time.Time) bool {
	if st.LoginTokenLost && o.Kind != Lost {
		return false
	}
	st.LastRotationError = message
	st.LastRotationErrorAt = now.UTC()
	st.RotationFailures++
	st.LoginTokenLost = o.Kind == Lost
	st.OutcomeCheckAt = o.CheckAt
	st.RetryNotBefore = o.RetryNotBefore
	st.ProbeBeforeRefresh = st.ProbeBeforeRefresh || o.Kind == Unconfirmed
	return true
}
