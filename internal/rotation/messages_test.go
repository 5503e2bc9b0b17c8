package rotation

import (
	"strings"
	"testing"
	"time"
)

// TestMessageTellsTheOperatorWhatHappenedAndWhatToDo: each outcome's message says what is known
// (applied and lost, rejected, unchanged, unknown until a given time, held in memory), carries
// the cause and the times it is about, and, whenever the operator must write a new login token,
// names the mount's own config path.
func TestMessageTellsTheOperatorWhatHappenedAndWhatToDo(t *testing.T) {
	const path = "inabit-ops/config"
	started, checkAt := t0, t0.Add(11*time.Minute)
	const startedText, checkText = "2026-12-01T12:00:00Z", "2026-12-01T12:11:00Z"
	applied := "inabit applied the login-token refresh started at " + startedText
	rejected := "inabit rejected the stored login token (c)"
	write := "write it to " + path + " (login_token)"
	cases := []struct {
		name     string
		o        Outcome
		want     []string
		dontWant []string
	}{
		{"lost: refresh answered with another error, old token dead", Outcome{Kind: Lost, Why: WhyRefresh, Answer: Failed, Cause: "c", StartedAt: started},
			[]string{"LOGIN TOKEN LOST", applied, "never reached Vault storage (c)", write}, []string{"rejected"}},
		{"lost: refresh rejected, old token dead", Outcome{Kind: Lost, Why: WhyRefresh, Answer: Rejected, Cause: "c", StartedAt: started},
			[]string{"LOGIN TOKEN LOST", rejected, "No refresh is sent with it again", write}, []string{"applied"}},
		{"lost: settled refresh was applied", Outcome{Kind: Lost, Why: WhySettle, Answer: Rejected, StartedAt: started},
			[]string{"LOGIN TOKEN LOST", applied, "never reached Vault storage;", write}, []string{"rejected", "()"}},
		{"lost: rejected twice before a refresh", Outcome{Kind: Lost, Why: WhyProbeBefore, Answer: Rejected, Cause: "c"},
			[]string{"LOGIN TOKEN LOST", rejected, write}, []string{"applied"}},
		{"lost: a read's rejection confirmed", Outcome{Kind: Lost, Why: WhyReadRejection, Answer: Failed, Cause: "c"},
			[]string{"LOGIN TOKEN LOST", rejected, write}, []string{"applied"}},
		{"unchanged", Outcome{Kind: Unchanged, Why: WhyRefresh, Cause: "c"},
			[]string{"refreshing the login token failed (c)", "unchanged and still valid", "retrying later"}, []string{"LOST", path}},
		{"pending: the refresh got no answer", Outcome{Kind: Pending, Why: WhyRefresh, Cause: "c", StartedAt: started, CheckAt: checkAt},
			[]string{"refresh started at " + startedText + " got no answer from inabit itself (c)", "outcome unknown", "checked again at " + checkText,
				"reported lost then"}, []string{"cannot be asked", path}},
		{"pending: settling could not ask", Outcome{Kind: Pending, Why: WhySettle, Cause: "c", StartedAt: started, CheckAt: checkAt},
			[]string{"refresh started at " + startedText, "cannot be asked whether it was applied (c)", "checked again at " + checkText}, []string{"from inabit itself", path}},
		{"pending: too young to settle", PendingSettle(started, checkAt),
			[]string{"refresh started at " + startedText + " (on this node or one that has since stopped)", "checked again at " + checkText},
			[]string{"cannot be asked", "()", path}},
		{"unconfirmed: the rotated token not yet accepted", Outcome{Kind: Unconfirmed, Why: WhyVerify, Answer: Rejected, Cause: "c"},
			[]string{"the login token was rotated", "not confirmed that the new token works (c)", "stored and in use"}, []string{"failed", path}},
		{"unconfirmed: refresh failed, probe unanswered", Outcome{Kind: Unconfirmed, Why: WhyRefresh, Answer: Rejected, Cause: "c"},
			[]string{"refreshing the login token failed (c)", "could not be asked whether the login token still works"}, []string{"rotated", "once"}},
		{"unconfirmed: rejected once", Outcome{Kind: Unconfirmed, Why: WhyProbeBefore, Answer: Rejected, Cause: "c", SeenRejected: true},
			[]string{"inabit rejected the stored login token once (c)", "asked again at the next tick", "twice rejected is LOGIN TOKEN LOST"}, []string{"earlier call"}},
		{"unconfirmed: rejected earlier, cannot ask", Outcome{Kind: Unconfirmed, Why: WhyReadRejection, Answer: NoAnswer, Cause: "c", SeenRejected: true},
			[]string{"rejected the stored login token on an earlier call", "cannot be asked now whether it still works (c)"}, []string{"once", "not yet confirmed"}},
		{"unconfirmed: never proven, cannot ask", Outcome{Kind: Unconfirmed, Why: WhyProbeBefore, Answer: NoAnswer, Cause: "c"},
			[]string{"has not yet confirmed that the stored login token works", "cannot be asked now (c)"}, []string{"rejected"}},
		{"skipped: an unsaved token", Outcome{Kind: Skipped, Why: WhySave, Cause: "c"},
			[]string{"still not saved to storage (c)", "not rotating again until it is"}, []string{"not writable", "could not be asked"}},
		{"skipped: records refused", Outcome{Kind: Skipped, Why: WhyRecords, Cause: "c"},
			[]string{"storage is not writable (c)", "inabit was not called"}, []string{"not saved", "could not be asked"}},
		{"skipped: probe unanswered", Outcome{Kind: Skipped, Why: WhyProbeBefore, Cause: "c"},
			[]string{"could not be asked whether the login token works before refreshing it (c)", "no refresh was sent"}, []string{"not writable", "not saved"}},
		{"held", Outcome{Kind: Held, Why: WhySave, Cause: "c", StartedAt: started},
			[]string{"rotated at " + startedText + " but saving it to storage failed (c)", "held in memory", "restart or failover"}, []string{path}},
		{"dropped", Outcome{Kind: Dropped, Why: WhySave, Cause: "c", StartedAt: started},
			[]string{"new login token at " + startedText, "before it was saved (c)", "write a new login token to " + path}, nil},
		{"settled", Outcome{Kind: Settled, Why: WhySettle}, []string{"was not applied", "still works"}, []string{path}},
		{"rotated", Outcome{Kind: Rotated}, []string{"login token rotated"}, []string{"fail"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := Message(tc.o, path)
			for _, w := range tc.want {
				if !strings.Contains(m, w) {
					t.Errorf("message %q does not say %q", m, w)
				}
			}
			for _, w := range tc.dontWant {
				if strings.Contains(m, w) {
					t.Errorf("message %q says %q", m, w)
				}
			}
		})
	}
}

// TestInFlightMessageNamesTheStartAndTheCheck.
func TestInFlightMessageNamesTheStartAndTheCheck(t *testing.T) {
	m := InFlightMessage(t0.In(time.FixedZone("CET", 3600)), t0.Add(11*time.Minute))
	for _, w := range []string{"refresh started at 2026-12-01T12:00:00Z", "outcome unknown, checked again at 2026-12-01T12:11:00Z"} {
		if !strings.Contains(m, w) {
			t.Errorf("in-flight message %q does not say %q", m, w)
		}
	}
	if FormatTime(time.Time{}) != "" {
		t.Error("a zero time is not shown empty")
	}
}

// TestScheduleWarningOnlyWhenTheExpiryOverridesThePolicy: readers are warned when the token
// lives shorter than rotation_period, when the next rotation_schedule slot comes after the
// expiry deadline, or when the token lives too short to be rotated in time; never when
// automated rotation is off, the token is lost, it has no exp, or the policy comes first.
func TestScheduleWarningOnlyWhenTheExpiryOverridesThePolicy(t *testing.T) {
	const mount = "inabit-ops/"
	day := 24 * time.Hour
	life := func(d time.Duration) Token { return Token{IssuedAt: t0, ExpiresAt: t0.Add(d), StoredAt: t0} }
	period := func(p time.Duration) Settings { return Settings{RotationPeriod: p, RequestTimeout: 30 * time.Second} }
	weekly := Settings{RotationSchedule: "0 10 * * 2", RequestTimeout: 30 * time.Second} // t0 is a Tuesday, 12:00
	daily := Settings{RotationSchedule: "0 13 * * *", RequestTimeout: 30 * time.Second}
	cases := []struct {
		name string
		set  Settings
		st   Status
		tok  Token
		want []string // empty: no warning
	}{
		{"token outlives the period", period(360 * time.Hour), Status{}, life(30 * day), nil},
		{"token lives exactly the period", period(360 * time.Hour), Status{}, life(15 * day), nil},
		{"token lives shorter than the period", period(360 * time.Hour), Status{}, life(15*day - time.Second),
			[]string{"lives 359h59m59s, shorter than rotation_period (360h0m0s)", "rotated at 2026-12-15T11:59:59Z", "in " + mount + "config"}},
		{"no exp", period(360 * time.Hour), Status{}, Token{IssuedAt: t0}, nil},
		{"exp, but no known birth", period(360 * time.Hour), Status{}, Token{ExpiresAt: t0.Add(day)}, nil},
		{"exp at birth", period(360 * time.Hour), Status{}, Token{IssuedAt: t0, ExpiresAt: t0}, nil},
		{"lost", period(360 * time.Hour), Status{LoginTokenLost: true}, life(time.Minute), nil},
		{"automated rotation off", Settings{RotationPeriod: 360 * time.Hour, DisableAutomatedRotation: true}, Status{}, life(time.Minute), nil},
		{"too short-lived", period(360 * time.Hour), Status{}, life(time.Minute),
			[]string{"lives 1m0s, too short", "request_timeout + 2s", "at least 2m32s", "lower request_timeout in " + mount + "config"}},
		{"a slot before the deadline", weekly, Status{}, life(30 * day), nil},
		{"the next slot after the deadline", weekly, Status{}, life(4 * day),
			[]string{"slot (2026-12-08T10:00:00Z) comes after", "expires at 2026-12-05T12:00:00Z", "rotated at 2026-12-04T12:00:00Z instead"}},
		{"a slot before the deadline of a short token", daily, Status{}, life(4 * time.Hour), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := ScheduleWarning(tc.set, tc.st, tc.tok, t0, mount)
			if len(tc.want) == 0 {
				if w != "" {
					t.Fatalf("warning %q, want none", w)
				}
				return
			}
			for _, s := range tc.want {
				if !strings.Contains(w, s) {
					t.Errorf("warning %q does not say %q", w, s)
				}
			}
		})
	}
}
