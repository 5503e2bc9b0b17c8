package rotation

import "time"

// MaxRetryAfter caps inabit's Retry-After: a WAF can send ten years, and a rotation must never be
// held back past the token's expiry by one answer.
const MaxRetryAfter = time.Hour

// Answer is how a call to inabit ended, as far as the login token is concerned. Only Rejected and
// Failed (and success) are inabit's own word that the call is over; NoAnswer leaves inabit free
// to apply a refresh after our client gave up.
type Answer int

const (
	// Succeeded: inabit answered with the token asked for.
	Succeeded Answer = iota
	// NotSent: nothing left this host (the connection was never made): nothing was applied.
	NotSent
	// Declined: inabit declined before touching the token (a 429, or its own GraphQL FORBIDDEN).
	Declined
	// Rejected: inabit's own GraphQL UNAUTHENTICATED: the token presented is dead.
	Rejected
	// Failed: inabit answered with another GraphQL error: the call is over and was not applied.
	Failed
	// NoAnswer: sent, and no answer of inabit's own came back (a timeout, a dropped connection, a
	// 5xx, a proxy's page, a gateway's 401, garbage): a refresh may still be applied.
	NoAnswer
)

var answerNames = map[Answer]string{Succeeded: "succeeded", NotSent: "not sent", Declined: "declined",
	Rejected: "rejected", Failed: "failed", NoAnswer: "no answer"}

// String names the answer in lower case ("no answer"), for test failures and debugging.
func (a Answer) String() string { return answerNames[a] }

// Probe is what asking inabit for an access token with a login token found.
type Probe int

const (
	// Alive: inabit issued an access token with it.
	Alive Probe = iota
	// Dead: inabit itself rejected it.
	Dead
	// Unknown: no word of inabit's own either way.
	Unknown
)

// ProbeResult reads an access-token query's answer as a probe of the login token it presented.
func ProbeResult(a Answer) Probe {
	switch a {
	case Succeeded:
		return Alive
	case Rejected:
		return Dead
	default:
		return Unknown
	}
}

// Kind is what a rotation attempt concluded.
type Kind int

const (
	// Rotated: the new login token is stored and in use.
	Rotated Kind = iota
	// Held: the new token is in use but storage refused it; it is held in memory on this node
	// and saving is retried every tick.
	Held
	// Dropped: inabit minted a new token, but this node stopped being active before it was saved:
	// the next active node settles the rotation and reports the token lost.
	Dropped
	// Skipped: no refresh was sent (storage refused the records, or inabit could not be asked
	// whether the token works); the login token is unchanged.
	Skipped
	// Unchanged: the refresh failed, inabit says the login token still works; retried later.
	Unchanged
	// Pending: the refresh may still be applied by inabit; settled at CheckAt.
	Pending
	// Unconfirmed: inabit rejected the login token once and could not be asked again.
	Unconfirmed
	// Lost: the stored login token is dead. Sticky.
	Lost
	// Settled: an unfinished refresh was not applied; the stored token works.
	Settled
)

var kindNames = map[Kind]string{Rotated: "rotated", Held: "held", Dropped: "dropped", Skipped: "skipped",
	Unchanged: "unchanged", Pending: "pending", Unconfirmed: "unconfirmed", Lost: "lost", Settled: "settled"}

// String names the kind in lower case ("unconfirmed"), for test failures and debugging.
func (k Kind) String() string { return kindNames[k] }

// Why names the step that concluded, which selects the operator's message.
type Why int

const (
	// WhyRefresh: the refresh call itself.
	WhyRefresh Why = iota
	// WhyProbeBefore: the probe before a refresh.
	WhyProbeBefore
	// WhyRecords: the WAL and in-flight records.
	WhyRecords
	// WhySave: saving the rotated token.
	WhySave
	// WhySettle: settling an unfinished refresh.
	WhySettle
	// WhyReadRejection: confirming a rejection that reads saw.
	WhyReadRejection
	// WhyVerify: proving a just-rotated token works.
	WhyVerify
)

// Outcome is one conclusion of the protocol, with what its message and status need.
type Outcome struct {
	// Kind is what was concluded.
	Kind Kind
	// Why is the step that concluded it.
	Why Why
	// Cause is the error's text, already free of tokens.
	Cause string
	// Answer is how the refresh (or the probe, for WhyProbeBefore and WhyReadRejection) ended.
	Answer Answer
	// StartedAt is when the refresh this is about was sent.
	StartedAt time.Time
	// CheckAt (Pending) is when it is expected to be settled.
	CheckAt time.Time
	// RetryNotBefore (Unchanged) is inabit's Retry-After, capped.
	RetryNotBefore time.Time
	// SeenRejected (Unconfirmed) says inabit rejected the token on an earlier call; without it
	// the token is only not yet proven to work.
	SeenRejected bool
}

// HTTPStatus is what rotate-root answers with.
func (o Outcome) HTTPStatus() int {
	switch o.Kind {
	case Rotated, Held:
		return 200 // Held: the call did its job; the warning says the rest
	case Unconfirmed:
		if o.Why == WhyVerify {
			return 200 // rotated; the warning says inabit has not yet accepted the new token
		}
		return 502
	case Pending:
		return 503 // not this call's failure: nothing may be sent until the earlier refresh is settled
	default:
		return 502
	}
}

// EventLost is the login_token_lost metadata of the fail event.
func (o Outcome) EventLost() string {
	if o.Kind == Lost {
		return "true"
	}
	return "false"
}

// AfterRefresh decides what a failed refresh means. probe says the old token must be asked now
// (inabit answered, so the call is over and an "alive" cannot be overtaken); otherwise o is final.
func AfterRefresh(a Answer, cause string, retryAfter time.Duration, startedAt, now time.Time, b Budget) (o Outcome, probe bool) {
	o = Outcome{Why: WhyRefresh, Answer: a, Cause: cause, StartedAt: startedAt}
	switch a {
	case NoAnswer:
		o.Kind, o.CheckAt = Pending, b.OutcomeCheckAt(startedAt)
		return o, false
	case NotSent, Declined:
		o.Kind = Unchanged
		if retryAfter > 0 {
			o.RetryNotBefore = now.Add(min(retryAfter, MaxRetryAfter)).UTC()
		}
		return o, false
	default: // Rejected, Failed
		return o, true
	}
}

// AfterRefreshProbe concludes a refresh that inabit answered with an error, from a probe of the
// old token made after that answer.
func AfterRefreshProbe(refresh Outcome, p Probe) Outcome {
	switch p {
	case Alive:
		refresh.Kind = Unchanged
	case Dead:
		refresh.Kind = Lost
	default:
		refresh.Kind = Unconfirmed
	}
	return refresh
}

// Doubt is what this node holds against the stored token before it refreshes it.
type Doubt struct {
	// Rejected: inabit rejected this token on an earlier call of this process; Confirmable: that
	// rejection is at least ConfirmAfter old, so another rejection now is a second answer.
	Rejected, Confirmable bool
	// Unproven: the status says inabit has not yet confirmed that the token works.
	Unproven bool
	// AtDeadline: the expiry deadline has come; waiting for inabit to vouch for the token would
	// let it expire.
	AtDeadline bool
}

// BeforeRefresh decides from the probe made right before a refresh whether the refresh may be
// sent: never with a token inabit has rejected twice, a few seconds apart; not while inabit
// cannot vouch for a token it rejected or has not yet accepted; and, once the expiry deadline has
// come, even without the probe's answer (a refresh inabit rejects is followed by a probe).
func BeforeRefresh(p Probe, a Answer, cause string, d Doubt) (o Outcome, proceed bool) {
	o = Outcome{Why: WhyProbeBefore, Answer: a, Cause: cause, SeenRejected: d.Rejected}
	switch {
	case p == Alive:
		return o, true
	case p == Dead && d.Confirmable:
		o.Kind = Lost
	case p == Dead:
		o.Kind, o.SeenRejected = Unconfirmed, true // one answer: the next tick asks again
	case d.Rejected || d.Unproven && !d.AtDeadline:
		o.Kind = Unconfirmed
	case d.AtDeadline:
		return o, true
	default:
		o.Kind = Skipped
	}
	return o, false
}

// ConfirmRejection concludes the tick's look at a token that a read saw inabit reject
// (confirmable: at least ConfirmAfter ago) or that is not yet proven to work.
func ConfirmRejection(p Probe, a Answer, cause string, confirmable bool) (o Outcome, changed bool) {
	o = Outcome{Why: WhyReadRejection, Answer: a, Cause: cause, SeenRejected: confirmable}
	switch {
	case p == Dead && confirmable:
		o.Kind = Lost
	case p == Dead:
		o.Kind, o.SeenRejected = Unconfirmed, true // one answer: the next tick asks again
	case p == Unknown:
		o.Kind = Unconfirmed
	default:
		return o, false // alive after all: a glitch
	}
	return o, true
}

// SettleDue says whether an unfinished refresh may be settled now. seenFor is how long this node
// has known of it, on its monotonic clock: since it sent the refresh, or since it first saw
// another node's WAL entry (which was written before that node sent its refresh, so seenFor never
// exceeds the refresh's true age). Counting only seenFor keeps the rule under any wall-clock step
// or skew between nodes. wait is how much longer it must wait.
// sentUnder is the settle wait recorded when the refresh was sent (zero for entries written
// before it was recorded): the longer of it and the current budget's counts, so lowering
// request_timeout or refresh_grace_period never shortens the wait for a refresh already sent.
func SettleDue(seenFor time.Duration, b Budget, sentUnder time.Duration) (due bool, wait time.Duration) {
	need := max(b.SettleAfter(), sentUnder)
	if seenFor >= need {
		return true, 0
	}
	return false, need - seenFor
}

// AfterSettleProbe concludes an unfinished refresh from a probe of the old token made once
// SettleDue: inabit can no longer apply it.
func AfterSettleProbe(p Probe, a Answer, cause string, startedAt, now time.Time) Outcome {
	o := Outcome{Why: WhySettle, Answer: a, Cause: cause, StartedAt: startedAt}
	switch p {
	case Alive:
		o.Kind = Settled
	case Dead:
		o.Kind, o.Cause = Lost, "" // the probe's rejection says nothing the message does not
	default:
		o.Kind, o.CheckAt = Pending, now.Add(TickInterval).UTC()
	}
	return o
}

// PendingSettle is the outcome while an unfinished refresh is too young to settle.
func PendingSettle(startedAt, checkAt time.Time) Outcome {
	return Outcome{Kind: Pending, Why: WhySettle, Answer: NoAnswer, StartedAt: startedAt, CheckAt: checkAt}
}

// RetryDelay is how long periodic rotation waits after the n-th consecutive failure: 1m, 2m, 4m …
// capped at 1h.
func RetryDelay(failures int) time.Duration {
	if failures <= 0 {
		return 0
	}
	if failures > 7 {
		return time.Hour
	}
	return min(time.Minute<<(failures-1), time.Hour)
}
