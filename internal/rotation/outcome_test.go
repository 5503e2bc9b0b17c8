package rotation

import (
	"testing"
	"time"
)

var (
	t0     = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	budget = Budget{RequestTimeout: 30 * time.Second, Grace: 10 * time.Minute}
)

// TestAfterRefreshOnlyInabitsOwnAnswerDecidesAtOnce: a refresh with no answer of inabit's own is
// pending until the grace has passed since our call gave up; a call that never left or that
// inabit declined leaves the token unchanged; inabit's error answers send us to probe.
func TestAfterRefreshOnlyInabitsOwnAnswerDecidesAtOnce(t *testing.T) {
	cases := []struct {
		answer     Answer
		retryAfter time.Duration
		wantKind   Kind
		wantProbe  bool
		wantCheck  time.Time
		wantRetry  time.Time
	}{
		{NoAnswer, 0, Pending, false, t0.Add(10*time.Second + 32*time.Second + 10*time.Minute), time.Time{}},
		{NotSent, 0, Unchanged, false, time.Time{}, time.Time{}},
		{Declined, 0, Unchanged, false, time.Time{}, time.Time{}},
		{Declined, 30 * time.Second, Unchanged, false, time.Time{}, t0.Add(time.Minute + 30*time.Second)},
		{Declined, 10 * 365 * 24 * time.Hour, Unchanged, false, time.Time{}, t0.Add(time.Minute + MaxRetryAfter)},
		{Rejected, 0, 0, true, time.Time{}, time.Time{}},
		{Failed, 0, 0, true, time.Time{}, time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.answer.String(), func(t *testing.T) {
			o, probe := AfterRefresh(tc.answer, "cause", tc.retryAfter, t0, t0.Add(time.Minute), budget)
			if probe != tc.wantProbe {
				t.Fatalf("probe = %v, want %v", probe, tc.wantProbe)
			}
			if probe {
				return
			}
			if o.Kind != tc.wantKind || !o.CheckAt.Equal(tc.wantCheck) || !o.RetryNotBefore.Equal(tc.wantRetry) {
				t.Fatalf("outcome = %v check %v retry %v; want %v check %v retry %v", o.Kind, o.CheckAt, o.RetryNotBefore, tc.wantKind, tc.wantCheck, tc.wantRetry)
			}
		})
	}
}

// TestProbeAfterAnsweredRefreshDecidesLost: after inabit answered the refresh, the old token's
// probe decides: alive is unchanged, dead is lost, unknown is unconfirmed (probe before refresh).
func TestProbeAfterAnsweredRefreshDecidesLost(t *testing.T) {
	for p, want := range map[Probe]Kind{Alive: Unchanged, Dead: Lost, Unknown: Unconfirmed} {
		for _, a := range []Answer{Rejected, Failed} {
			refresh, _ := AfterRefresh(a, "x", 0, t0, t0, budget)
			if got := AfterRefreshProbe(refresh, p).Kind; got != want {
				t.Errorf("refresh %s, probe %d: %s, want %s", a, p, got, want)
			}
		}
	}
}

// TestNoRefreshWithoutInabitVouchingForTheToken: a refresh is sent when the probe says alive, or
// at the expiry deadline when inabit cannot answer and never rejected the token; a token inabit
// rejected twice, a few seconds apart, is LOST, and once is only unconfirmed.
func TestNoRefreshWithoutInabitVouchingForTheToken(t *testing.T) {
	rejected := Doubt{Rejected: true}
	confirmable := Doubt{Rejected: true, Confirmable: true}
	unproven := Doubt{Unproven: true}
	deadline := Doubt{AtDeadline: true}
	cases := []struct {
		name        string
		probe       Probe
		doubt       Doubt
		wantProceed bool
		wantKind    Kind
	}{
		{"alive", Alive, Doubt{}, true, 0},
		{"alive after a rejection", Alive, confirmable, true, 0},
		{"dead once", Dead, Doubt{}, false, Unconfirmed},
		{"dead, rejected moments ago", Dead, rejected, false, Unconfirmed},
		{"dead twice", Dead, confirmable, false, Lost},
		{"dead twice at the deadline", Dead, Doubt{Rejected: true, Confirmable: true, AtDeadline: true}, false, Lost},
		{"unknown", Unknown, Doubt{}, false, Skipped},
		{"unknown after a rejection", Unknown, rejected, false, Unconfirmed},
		{"unknown after a rejection at the deadline", Unknown, Doubt{Rejected: true, AtDeadline: true}, false, Unconfirmed},
		{"unknown, unproven", Unknown, unproven, false, Unconfirmed},
		{"unknown, unproven at the deadline", Unknown, Doubt{Unproven: true, AtDeadline: true}, true, 0},
		{"unknown at the deadline", Unknown, deadline, true, 0},
	}
	for _, tc := range cases {
		o, proceed := BeforeRefresh(tc.probe, NoAnswer, "", tc.doubt)
		if proceed != tc.wantProceed || (!proceed && o.Kind != tc.wantKind) {
			t.Errorf("%s: proceed %v kind %s; want %v %s", tc.name, proceed, o.Kind, tc.wantProceed, tc.wantKind)
		}
	}
}

// TestReadRejectionConfirmedBySecondAnswer: a rejection seen by a read becomes LOST only when a
// second answer agrees; alive clears it; no answer leaves it unconfirmed.
func TestReadRejectionConfirmedBySecondAnswer(t *testing.T) {
	cases := []struct {
		probe       Probe
		confirmable bool
		wantKind    Kind
		wantChanged bool
	}{
		{Alive, true, 0, false}, {Alive, false, 0, false},
		{Dead, true, Lost, true}, {Dead, false, Unconfirmed, true},
		{Unknown, true, Unconfirmed, true}, {Unknown, false, Unconfirmed, true},
	}
	for _, tc := range cases {
		o, changed := ConfirmRejection(tc.probe, Succeeded, "", tc.confirmable)
		if changed != tc.wantChanged || changed && o.Kind != tc.wantKind {
			t.Errorf("probe %d confirmable %v: %s %v, want %s %v", tc.probe, tc.confirmable, o.Kind, changed, tc.wantKind, tc.wantChanged)
		}
	}
}

// TestSettleWaitsTheGraceOnThisNodesClock: an unfinished refresh is settled only once this node
// has known of it for MaxRecordLatency + request_timeout + CallSlack + grace.
func TestSettleWaitsTheGraceOnThisNodesClock(t *testing.T) {
	need := MaxRecordLatency + budget.RequestTimeout + CallSlack + budget.Grace
	for _, tc := range []struct {
		seenFor  time.Duration
		wantDue  bool
		wantWait time.Duration
	}{
		{0, false, need},
		{need - time.Nanosecond, false, time.Nanosecond},
		{need, true, 0},
		{need + time.Hour, true, 0},
	} {
		due, wait := SettleDue(tc.seenFor, budget, 0)
		if due != tc.wantDue || wait != tc.wantWait {
			t.Errorf("seen for %s: due %v wait %s, want %v %s", tc.seenFor, due, wait, tc.wantDue, tc.wantWait)
		}
	}
	// The wait recorded when the refresh was sent counts when it is longer than today's budget.
	if due, wait := SettleDue(need, budget, need+time.Hour); due || wait != time.Hour {
		t.Errorf("recorded wait ignored: due %v wait %s", due, wait)
	}
	if due, _ := SettleDue(need, budget, time.Second); !due {
		t.Error("a shorter recorded wait shortened today's budget")
	}
	for p, want := range map[Probe]Kind{Alive: Settled, Dead: Lost, Unknown: Pending} {
		o := AfterSettleProbe(p, Succeeded, "c", t0, t0.Add(time.Hour))
		if o.Kind != want {
			t.Errorf("settle probe %d: %s, want %s", p, o.Kind, want)
		}
		if want == Pending && !o.CheckAt.Equal(t0.Add(time.Hour+TickInterval)) {
			t.Errorf("unknown settle probe checks again at %v, want a tick later", o.CheckAt)
		}
	}
}

// TestProbeResultOnlyInabitsRejectionIsDead.
func TestProbeResultOnlyInabitsRejectionIsDead(t *testing.T) {
	want := map[Answer]Probe{Succeeded: Alive, Rejected: Dead, NotSent: Unknown, Declined: Unknown, Failed: Unknown, NoAnswer: Unknown}
	for a, p := range want {
		if got := ProbeResult(a); got != p {
			t.Errorf("%s: %d, want %d", a, got, p)
		}
	}
}

// TestLostIsStickyInTheStatus: nothing but another Lost replaces LOST.
func TestLostIsStickyInTheStatus(t *testing.T) {
	st := Status{}
	if !st.Apply(Outcome{Kind: Lost}, "LOST", t0) || !st.LoginTokenLost || st.RotationFailures != 1 {
		t.Fatalf("lost not recorded: %+v", st)
	}
	for _, k := range []Kind{Unchanged, Pending, Unconfirmed, Skipped, Held} {
		if st.Apply(Outcome{Kind: k, CheckAt: t0}, "other", t0) || st.LastRotationError != "LOST" || !st.LoginTokenLost {
			t.Fatalf("%s replaced LOST: %+v", k, st)
		}
	}
	if !st.Apply(Outcome{Kind: Lost}, "LOST again", t0) || st.RotationFailures != 2 {
		t.Fatalf("a second LOST not recorded: %+v", st)
	}
	st = Status{}
	st.Apply(Outcome{Kind: Pending, CheckAt: t0, RetryNotBefore: t0.Add(time.Minute)}, "p", t0)
	if st.OutcomeCheckAt != t0 || st.RetryNotBefore != t0.Add(time.Minute) || st.LoginTokenLost || st == (Status{}) {
		t.Fatalf("pending status: %+v", st)
	}
	st.Apply(Outcome{Kind: Unconfirmed}, "u", t0)
	if !st.ProbeBeforeRefresh || st.RotationFailures != 2 || !st.OutcomeCheckAt.IsZero() {
		t.Fatalf("unconfirmed status: %+v", st)
	}
}

// TestRotateRootStatusPerOutcome is the HTTP table of rotate-root.
func TestRotateRootStatusPerOutcome(t *testing.T) {
	cases := map[Outcome]int{
		{Kind: Rotated}: 200, {Kind: Held}: 200, {Kind: Unconfirmed, Why: WhyVerify}: 200,
		{Kind: Pending}: 503, {Kind: Lost}: 502, {Kind: Dropped}: 502, {Kind: Unchanged}: 502,
		{Kind: Skipped}: 502, {Kind: Unconfirmed, Why: WhyRefresh}: 502,
	}
	for o, want := range cases {
		if got := o.HTTPStatus(); got != want {
			t.Errorf("%s/%d: %d, want %d", o.Kind, o.Why, got, want)
		}
	}
	if (Outcome{Kind: Lost}).EventLost() != "true" || (Outcome{Kind: Pending}).EventLost() != "false" {
		t.Error("login_token_lost event metadata")
	}
}

// TestRetryDelayDoublesToAnHour.
func TestRetryDelayDoublesToAnHour(t *testing.T) {
	want := []time.Duration{0, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, time.Hour, time.Hour}
	for n, w := range want {
		if got := RetryDelay(n); got != w {
			t.Errorf("delay after %d failures = %s, want %s", n, got, w)
		}
	}
	if got := RetryDelay(1000); got != time.Hour {
		t.Errorf("delay after 1000 failures = %s, want the 1h cap", got)
	}
}

// TestStatusApplyRecordsEachFailure: every failure recorded counts one more, stamps its message
// and time (in UTC), carries the outcome's check time and Retry-After and drops earlier ones;
// probe_before_refresh is set by an unconfirmed token and kept by later failures.
func TestStatusApplyRecordsEachFailure(t *testing.T) {
	paris := time.FixedZone("CET", 3600)
	now := t0.In(paris)
	st := Status{}
	if !st.Apply(Outcome{Kind: Unchanged, RetryNotBefore: t0.Add(time.Minute)}, "unchanged", now) {
		t.Fatal("Apply on a healthy status reported no change")
	}
	want := Status{LastRotationError: "unchanged", LastRotationErrorAt: t0, RotationFailures: 1, RetryNotBefore: t0.Add(time.Minute)}
	if st != want || st.LastRotationErrorAt.Location() != time.UTC {
		t.Fatalf("after Unchanged: %+v, want %+v", st, want)
	}
	st.Apply(Outcome{Kind: Pending, CheckAt: t0.Add(time.Hour)}, "pending", now.Add(time.Second))
	want = Status{LastRotationError: "pending", LastRotationErrorAt: t0.Add(time.Second), RotationFailures: 2, OutcomeCheckAt: t0.Add(time.Hour)}
	if st != want {
		t.Fatalf("after Pending: %+v, want %+v", st, want)
	}
	st.Apply(Outcome{Kind: Unconfirmed}, "unconfirmed", now)
	if !st.ProbeBeforeRefresh || st.RotationFailures != 3 || !st.OutcomeCheckAt.IsZero() || st.LoginTokenLost {
		t.Fatalf("after Unconfirmed: %+v", st)
	}
	st.Apply(Outcome{Kind: Skipped}, "skipped", now)
	if !st.ProbeBeforeRefresh || st.RotationFailures != 4 {
		t.Fatalf("a later failure dropped probe_before_refresh: %+v", st)
	}
	for _, k := range []Kind{Unchanged, Pending, Skipped, Held, Dropped} {
		st := Status{}
		if st.Apply(Outcome{Kind: k}, "m", now); st.ProbeBeforeRefresh || st.LoginTokenLost {
			t.Errorf("%s set probe_before_refresh or lost: %+v", k, st)
		}
	}
}
