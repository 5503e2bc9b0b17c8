package rotation

import (
	"github.com/robfig/cron/v3"

	"fmt"
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

type mount struct {
	set Settings
	st  Status
	tok Token
}

func withStored(t Token, stored time.Time) Token {
	t.StoredAt = stored
	return t
}

// TestPlanRotatesByPolicyRetryOrExpiry works the schedule out on a virtual clock: no Vault, no sleeps.
func TestPlanRotatesByPolicyRetryOrExpiry(t *testing.T) {
	token := func(iat, exp string) Token { return Token{IssuedAt: utc(iat), ExpiresAt: utc(exp)} }
	month := token("2026-12-01T00:00:00Z", "2026-12-31T00:00:00Z") // 30 days: deadline 24h before exp
	cases := []struct {
		name       string
		cfg        mount
		now        string
		wantAt     string
		wantReason string
	}{
		{"period from iat", mount{tok: withStored(month, utc("2026-12-01T00:00:00Z")), set: Settings{RotationPeriod: 360 * time.Hour}},
			"2026-12-02T00:00:00Z", "2026-12-16T00:00:00Z", ReasonPeriod},
		{"period longer than the token's life: expiry wins", mount{tok: withStored(token("2026-12-01T00:00:00Z", "2026-12-03T00:00:00Z"), time.Time{}), set: Settings{RotationPeriod: 360 * time.Hour}},
			"2026-12-01T01:00:00Z", "2026-12-02T12:00:00Z", ReasonExpiry},
		{"a slot after the expiry deadline: expiry wins", mount{tok: withStored(month, utc("2026-12-30T23:30:00Z")), set: Settings{RotationSchedule: "0 0 * * *"}},
			"2026-12-30T23:40:00Z", "2026-12-30T00:00:00Z", ReasonExpiry},
		{"daily slot after midnight UTC", mount{tok: withStored(token("2026-12-31T00:00:00Z", "2027-01-30T00:00:00Z"), utc("2026-12-31T23:30:00Z")), set: Settings{RotationSchedule: "0 0 * * *"}},
			"2026-12-31T23:40:00Z", "2027-01-01T00:00:00Z", ReasonSchedule},
		{"month end: the 31st skips short months", mount{tok: withStored(token("2027-01-31T13:00:00Z", "2027-05-01T00:00:00Z"), utc("2027-01-31T13:00:00Z")), set: Settings{RotationSchedule: "0 12 31 * *"}},
			"2027-02-01T00:00:00Z", "2027-03-31T12:00:00Z", ReasonSchedule},
		{"missed slot without a window is due at once", mount{tok: withStored(month, utc("2026-12-07T09:00:00Z")), set: Settings{RotationSchedule: "0 10 * * 2"}},
			"2026-12-08T15:00:00Z", "2026-12-08T10:00:00Z", ReasonSchedule},
		{"a slot before the schedule was written is not missed", mount{tok: withStored(month, utc("2026-12-01T00:00:00Z")), set: Settings{RotationSchedule: "0 10 * * 2", ScheduleSetAt: utc("2026-12-08T11:00:00Z")}},
			"2026-12-08T11:01:00Z", "2026-12-15T10:00:00Z", ReasonSchedule},
		{"missed slot inside the window", mount{tok: withStored(month, utc("2026-12-07T09:00:00Z")), set: Settings{RotationSchedule: "0 10 * * 2", RotationWindow: 2 * time.Hour}},
			"2026-12-08T11:59:00Z", "2026-12-08T10:00:00Z", ReasonSchedule},
		{"missed slot outside the window waits for the next", mount{tok: withStored(month, utc("2026-12-07T09:00:00Z")), set: Settings{RotationSchedule: "0 10 * * 2", RotationWindow: 2 * time.Hour}},
			"2026-12-08T12:01:00Z", "2026-12-15T10:00:00Z", ReasonSchedule},
		{"several missed slots: the latest one counts for the window", mount{tok: withStored(month, utc("2026-12-02T09:00:00Z")), set: Settings{RotationSchedule: "0 10 * * *", RotationWindow: time.Hour}},
			"2026-12-05T10:30:00Z", "2026-12-05T10:00:00Z", ReasonSchedule},
		{"weekly schedule, token dies first: expiry wins", mount{tok: withStored(token("2026-12-08T11:00:00Z", "2026-12-12T11:00:00Z"), utc("2026-12-08T11:00:00Z")), set: Settings{RotationSchedule: "0 10 * * 2"}},
			"2026-12-08T12:00:00Z", "2026-12-11T11:00:00Z", ReasonExpiry},
		{"backoff near the deadline is cut to it", mount{tok: withStored(month, time.Time{}), set: Settings{RotationPeriod: 360 * time.Hour}, st: Status{RotationFailures: 6, LastRotationErrorAt: utc("2026-12-29T23:50:00Z")}},
			"2026-12-29T23:55:00Z", "2026-12-30T00:00:00Z", ReasonExpiry},
		{"backoff past the deadline still waits a minute", mount{tok: withStored(month, time.Time{}), set: Settings{RotationPeriod: 360 * time.Hour}, st: Status{RotationFailures: 6, LastRotationErrorAt: utc("2026-12-30T06:00:00Z")}},
			"2026-12-30T06:00:30Z", "2026-12-30T06:01:00Z", ReasonExpiry},
		{"backoff near a slot", mount{tok: withStored(month, utc("2026-12-07T00:00:00Z")), set: Settings{RotationSchedule: "0 10 * * 2"}, st: Status{RotationFailures: 2, LastRotationErrorAt: utc("2026-12-08T10:00:05Z")}},
			"2026-12-08T10:01:00Z", "2026-12-08T10:02:05Z", ReasonRetry},
		{"outcome check holds everything back", mount{tok: withStored(month, time.Time{}), set: Settings{RotationPeriod: time.Hour}, st: Status{RotationFailures: 1, LastRotationErrorAt: utc("2026-12-01T01:00:00Z"), OutcomeCheckAt: utc("2026-12-01T01:10:00Z")}},
			"2026-12-01T01:00:30Z", "2026-12-01T01:10:00Z", ReasonOutcomeCheck},
		{"lost: nothing planned", mount{tok: withStored(month, time.Time{}), set: Settings{RotationPeriod: time.Hour}, st: Status{LoginTokenLost: true}}, "2026-12-01T01:00:00Z", "", ""},
		{"disabled: nothing planned", mount{tok: withStored(month, time.Time{}), set: Settings{RotationPeriod: time.Hour, DisableAutomatedRotation: true}}, "2026-12-01T01:00:00Z", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			at, reason := Plan(tc.cfg.set, tc.cfg.st, tc.cfg.tok, utc(tc.now))
			if FormatTime(at) != tc.wantAt || reason != tc.wantReason {
				t.Fatalf("planned rotation = %s (%s), want %s (%s)", FormatTime(at), reason, tc.wantAt, tc.wantReason)
			}
		})
	}
}

// TestRetryAfterNeverPushesRotationPastTheExpiryDeadline: a WAF's ten-year Retry-After (capped
// when recorded, but even uncapped) is overridden by the expiry deadline.
func TestRetryAfterNeverPushesRotationPastTheExpiryDeadline(t *testing.T) {
	tok := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-31T00:00:00Z")}
	set := Settings{RotationPeriod: 360 * time.Hour, RequestTimeout: 30 * time.Second}
	st := Status{RotationFailures: 1, LastRotationErrorAt: utc("2026-12-16T00:00:00Z"), RetryNotBefore: utc("2036-12-16T00:00:00Z")}
	at, reason := Plan(set, st, tok, utc("2026-12-16T00:01:00Z"))
	if want := utc("2026-12-30T00:00:00Z"); !at.Equal(want) || reason != ReasonExpiry {
		t.Fatalf("planned %s (%s), want the deadline %s (expiry)", FormatTime(at), reason, FormatTime(want))
	}
	// Before the deadline, inabit's Retry-After is honoured.
	st.RetryNotBefore = utc("2026-12-16T00:30:00Z")
	if at, reason := Plan(set, st, tok, utc("2026-12-16T00:01:00Z")); !at.Equal(st.RetryNotBefore) || reason != ReasonRetry {
		t.Fatalf("planned %s (%s), want the Retry-After %s", FormatTime(at), reason, FormatTime(st.RetryNotBefore))
	}
}

// TestShortLivedTokenIsPlannedWithTheTickAndTheCall: a token living 150 s is rotated at least a
// tick-and-a-half plus one call before it expires (at once here), never a quarter of its life
// before exp, which a once-a-minute tick can miss; and it is flagged too short-lived.
func TestShortLivedTokenIsPlannedWithTheTickAndTheCall(t *testing.T) {
	b := Budget{RequestTimeout: 30 * time.Second, Grace: 10 * time.Minute}
	short := Token{IssuedAt: t0, ExpiresAt: t0.Add(150 * time.Second), StoredAt: t0}
	if got, want := ExpiryDeadline(short, b), t0.Add(150*time.Second-2*TickInterval-32*time.Second); !got.Equal(want) {
		t.Fatalf("deadline %s, want %s", FormatTime(got), FormatTime(want))
	}
	if !TooShortLived(short, b) {
		t.Fatal("a 150 s token is not flagged too short-lived with request_timeout 30s")
	}
	long := Token{IssuedAt: t0, ExpiresAt: t0.Add(10 * time.Minute)}
	if TooShortLived(long, b) || !ExpiryDeadline(long, b).Equal(t0.Add(10*time.Minute-152*time.Second)) {
		t.Fatalf("10-minute token: short %v deadline %s", TooShortLived(long, b), FormatTime(ExpiryDeadline(long, b)))
	}
	month := Token{IssuedAt: t0, ExpiresAt: t0.Add(30 * 24 * time.Hour)}
	if !ExpiryDeadline(month, b).Equal(month.ExpiresAt.Add(-MaxExpiryMargin)) {
		t.Fatal("a 30-day token is not rotated a day before exp at the latest")
	}
	w := ScheduleWarning(Settings{RotationPeriod: time.Hour, RequestTimeout: 30 * time.Second}, Status{}, short, t0, "inabit-admin/")
	if w == "" || !strings.Contains(w, "inabit-admin/config") || !strings.Contains(w, "2m32s") {
		t.Fatalf("warning for a 150 s token: %q", w)
	}
}

// TestScheduleCatchUpFindsTheEarliestOpenSlotWithoutAWalk: after 69 days of missed every-minute
// slots, the slot due is the earliest whose rotation_window is still open, found at once (the
// old walk over every missed slot stopped at 100 000 and then waited for the next slot).
func TestScheduleCatchUpFindsTheEarliestOpenSlotWithoutAWalk(t *testing.T) {
	stored := utc("2027-01-01T00:00:00Z")
	set := Settings{RotationSchedule: "* * * * *", RotationWindow: time.Hour}
	tok := Token{StoredAt: stored}
	now := stored.Add(100_000*time.Minute + time.Hour + 30*time.Second)
	if got, want := ScheduledAt(set, tok, now), now.Add(-time.Hour+30*time.Second); !got.Equal(want) {
		t.Fatalf("scheduled at %s, want the earliest slot whose window is open, %s", FormatTime(got), FormatTime(want))
	}
	// A daily slot missed by more than its window waits for the next one.
	daily := Settings{RotationSchedule: "0 3 * * *", RotationWindow: time.Hour}
	if got, want := ScheduledAt(daily, tok, utc("2027-01-05T05:00:00Z")), utc("2027-01-06T03:00:00Z"); !got.Equal(want) {
		t.Fatalf("scheduled at %s, want the next slot %s", FormatTime(got), FormatTime(want))
	}
	// Exactly at the end of its window, a missed slot is still due.
	if got, want := ScheduledAt(daily, tok, utc("2027-01-05T04:00:00Z")), utc("2027-01-05T03:00:00Z"); !got.Equal(want) {
		t.Fatalf("scheduled at %s, want the slot whose window ends now %s", FormatTime(got), FormatTime(want))
	}
}

// TestInFlightRefreshPastTheDeadlineIsPlannedAtItsOutcomeCheck: the in-flight status written
// before a refresh (no failure counted yet, its start in last_rotation_error_at) plans the next
// look at the outcome check, not a retry a tick after the start, even at the expiry deadline.
func TestInFlightRefreshPastTheDeadlineIsPlannedAtItsOutcomeCheck(t *testing.T) {
	tok := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-31T00:00:00Z")}
	set := Settings{RotationPeriod: 360 * time.Hour, RequestTimeout: time.Second, RefreshGracePeriod: 30 * time.Second}
	started := utc("2026-12-30T00:00:30Z") // the deadline is 2026-12-30T00:00:00Z
	checkAt := set.Budget().OutcomeCheckAt(started)
	st := Status{LastRotationError: InFlightMessage(started, checkAt), LastRotationErrorAt: started, OutcomeCheckAt: checkAt}
	at, reason := Plan(set, st, tok, started.Add(time.Second))
	if !at.Equal(checkAt) || reason != ReasonOutcomeCheck {
		t.Fatalf("planned %s (%s), want the outcome check %s", FormatTime(at), reason, FormatTime(checkAt))
	}
	if want := started.Add(43 * time.Second); !checkAt.Equal(want) {
		t.Fatalf("outcome check %s, want %s", FormatTime(checkAt), FormatTime(want))
	}
}

// explicitSchedule lists every value of every field once, with the longest names: the longest
// expression that needs no repetition or padding (391 bytes). It must stay accepted.
func explicitSchedule() string {
	list := func(from, to int) string {
		var v []string
		for i := from; i <= to; i++ {
			v = append(v, fmt.Sprint(i))
		}
		return strings.Join(v, ",")
	}
	return strings.Join([]string{list(0, 59), list(0, 23), list(1, 31),
		"jan,feb,mar,apr,may,jun,jul,aug,sep,oct,nov,dec", "sun,mon,tue,wed,thu,fri,sat"}, " ")
}

// TestScheduleLongerThanAnyCronNeedsIsRefused: a legal but padded expression ("0,0,0,..."),
// which a config write would parse and keep, is refused before parsing with an error naming the
// field, the limit and the fix; every expression listing each value once still fits.
func TestScheduleLongerThanAnyCronNeedsIsRefused(t *testing.T) {
	if s := explicitSchedule(); len(s) > MaxScheduleLen {
		t.Fatalf("the explicit schedule (%d bytes) does not fit in %d", len(s), MaxScheduleLen)
	} else if _, err := ParseSchedule(s); err != nil {
		t.Fatalf("explicit schedule of %d bytes refused: %v", len(s), err)
	}
	padded := "0" + strings.Repeat(",0", 300) + " * * * *" // 609 bytes, hourly
	_, err := ParseSchedule(padded)
	if err == nil {
		t.Fatalf("a %d-byte rotation_schedule was accepted", len(padded))
	}
	for _, want := range []string{"rotation_schedule", "609 bytes", fmt.Sprint(MaxScheduleLen), "*/5"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if strings.Contains(err.Error(), padded) {
		t.Error("the error echoes the whole expression")
	}
}

// TestValidatingSchedulesLeavesNothingBehind: config writes validate with ParseSchedule; the
// expressions they parse, accepted or refused, are not kept (issue 17: 40 refused writes kept
// 4.2 MB for the life of the process).
func TestValidatingSchedulesLeavesNothingBehind(t *testing.T) {
	before := memoSize()
	for i := 0; i < 1000; i++ {
		if _, err := ParseSchedule(fmt.Sprintf("%d %d * * *", i%60, i/60)); err != nil {
			t.Fatal(err)
		}
		_, _ = ParseSchedule(fmt.Sprintf("%d 99 * * *", i))
	}
	if after := memoSize(); after != before {
		t.Fatalf("1000 validated and 1000 refused schedules left the memo at %d entries (was %d)", after, before)
	}
}

// TestStoredScheduleMemoStaysBounded: the read path memoises the stored schedules it plans by,
// but never more than maxMemoisedSchedules of them, however many distinct ones it sees.
func TestStoredScheduleMemoStaysBounded(t *testing.T) {
	tok := Token{StoredAt: utc("2027-01-01T00:00:00Z")}
	for i := 0; i < 1000; i++ {
		set := Settings{RotationSchedule: fmt.Sprintf("%d %d * * *", i%60, i/60)}
		if ScheduledAt(set, tok, utc("2027-01-01T00:00:00Z")).IsZero() {
			t.Fatalf("no slot for %q", set.RotationSchedule)
		}
	}
	if n := memoSize(); n > maxMemoisedSchedules {
		t.Fatalf("1000 distinct stored schedules left %d in the memo, want at most %d", n, maxMemoisedSchedules)
	}
	// Reads of a stored schedule stay cheap: the second read finds the first one's parse.
	a, _ := storedSchedules.get("0 10 * * 2")
	if b, _ := storedSchedules.get("0 10 * * 2"); a != b {
		t.Fatal("a stored schedule was parsed again on the next read")
	}
}

func memoSize() int { return storedSchedules.size() }

// The memo fills up to exactly maxMemoisedSchedules distinct schedules, and the next one starts
// it over: bounded, and a real memo below the bound.
func TestStoredScheduleMemoHoldsExactlyItsBound(t *testing.T) {
	storedSchedules.mu.Lock()
	storedSchedules.m = map[string]cron.Schedule{}
	storedSchedules.mu.Unlock()
	for i := 0; i < maxMemoisedSchedules; i++ {
		if _, err := storedSchedules.get(fmt.Sprintf("%d %d * * 3", i%60, i/60)); err != nil {
			t.Fatal(err)
		}
	}
	if n := memoSize(); n != maxMemoisedSchedules {
		t.Fatalf("%d distinct schedules left %d in the memo, want all of them", maxMemoisedSchedules, n)
	}
	if _, err := storedSchedules.get("59 23 * * 3"); err != nil {
		t.Fatal(err)
	}
	if n := memoSize(); n != 1 {
		t.Fatalf("one more schedule left %d in the memo, want it started over with 1", n)
	}
}

// A rotation_schedule of exactly MaxScheduleLen bytes is taken; one byte more is refused.
func TestScheduleLengthCapIsExact(t *testing.T) {
	at := strings.Repeat(" ", MaxScheduleLen-len("0 10 * * *")) + "0 10 * * *"
	if err := CheckScheduleLen(at); err != nil {
		t.Fatalf("%d bytes refused: %v", len(at), err)
	}
	if err := CheckScheduleLen(" " + at); err == nil {
		t.Fatalf("%d bytes taken", len(at)+1)
	}
}
