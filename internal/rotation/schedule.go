package rotation

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// When the next rotation happens, and why. Two ways to schedule, as Vault names them:
// rotation_period (rotate once the token is this old) or rotation_schedule (a 5-field cron in UTC,
// optionally with rotation_window to catch up a slot missed while no node could rotate). Whatever
// they say, the token's expiry wins: a token with an exp is rotated by its expiry deadline, and
// nothing (the backoff after failures, inabit's Retry-After) pushes an attempt past it.

// Reason says why the next rotation happens when it does; also the trigger of the rotate events
// it causes.
type Reason = string

const (
	// ReasonPeriod: the token has reached rotation_period's age.
	ReasonPeriod Reason = "rotation_period"
	// ReasonSchedule: a rotation_schedule slot.
	ReasonSchedule Reason = "rotation_schedule"
	// ReasonExpiry: the token's expiry deadline (ExpiryDeadline), which nothing pushes it past.
	ReasonExpiry Reason = "expiry"
	// ReasonRetry: the retry after failed attempts (RetryDelay, or inabit's Retry-After).
	ReasonRetry Reason = "retry"
	// ReasonOutcomeCheck: an unfinished refresh's outcome is checked (Status.OutcomeCheckAt).
	ReasonOutcomeCheck Reason = "outcome_check"

	// MinRotationWindow is Vault's own minimum (sdk/rotation).
	MinRotationWindow = time.Hour
	// MaxExpiryMargin caps how long before exp a token is rotated at the latest.
	MaxExpiryMargin = 24 * time.Hour
	// MaxScheduleLen bounds rotation_schedule. Listing every value of every field once, with
	// month and day names, takes 391 bytes; anything longer repeats or pads values, and was
	// parsed (and kept) whole.
	MaxScheduleLen = 512
)

// The 5-field parser of Vault's SDK: minute hour day-of-month month day-of-week.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// maxMemoisedSchedules bounds storedSchedules: a mount stores one schedule, so this is room for
// 256 mounts' schedules before it starts over.
const maxMemoisedSchedules = 256

// storedSchedules memoises the parsing of stored schedules: the planned rotation is worked out on
// every token read. Only ScheduledAt fills it, with schedules validated when they were written;
// ParseSchedule (what config writes validate with) keeps nothing, so a refused write leaves
// nothing behind.
var storedSchedules = scheduleMemo{m: map[string]cron.Schedule{}}

type scheduleMemo struct {
	mu sync.Mutex
	m  map[string]cron.Schedule
}

// get returns the parsed expr, parsing and keeping it on a miss. When full the memo starts over
// rather than tracking use: parsing again costs microseconds, and more than
// maxMemoisedSchedules schedules in turn is not a case worth the bookkeeping.
func (c *scheduleMemo) get(expr string) (cron.Schedule, error) {
	c.mu.Lock()
	s, ok := c.m[expr]
	c.mu.Unlock()
	if ok {
		return s, nil
	}
	// A stored schedule was validated when it was written, perhaps by a version without
	// MaxScheduleLen: parse it as it is, or an upgrade would stop its rotations without a word.
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxMemoisedSchedules {
		c.m = make(map[string]cron.Schedule, maxMemoisedSchedules)
	}
	c.m[strings.Clone(expr)] = s // never pin a larger buffer expr may be a slice of
	return s, nil
}

func (c *scheduleMemo) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// CheckScheduleLen refuses a rotation_schedule longer than MaxScheduleLen. The error does not
// quote it: echoing megabytes back is what the limit is there to stop. Config writes call it on
// the raw field, before splitting it into fields costs memory in proportion.
func CheckScheduleLen(expr string) error {
	if len(expr) > MaxScheduleLen {
		return fmt.Errorf("rotation_schedule is %d bytes, longer than any cron expression needs (at most %d): "+
			"write each field once, with ranges and steps such as \"*/5\" for every 5 minutes", len(expr), MaxScheduleLen)
	}
	return nil
}

// ParseSchedule parses a rotation_schedule; its errors name the field and the fix. It keeps
// nothing: the read path memoises stored schedules through storedSchedules.
func ParseSchedule(expr string) (cron.Schedule, error) {
	if err := CheckScheduleLen(expr); err != nil {
		return nil, err
	}
	if strings.Contains(expr, "TZ=") {
		return nil, fmt.Errorf("rotation_schedule %q names a time zone; it is always evaluated in UTC, so drop the TZ= prefix", expr)
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("rotation_schedule %q is not a 5-field cron expression (minute hour day-of-month month day-of-week, in UTC; for example \"0 10 * * 2\" is Tuesdays 10:00): %v",
			expr, err)
	}
	return s, nil
}

// scheduleAnchor is the later of when the current token came into Vault's hands (written or
// rotated) and when the schedule was written: a slot before either is not one that was missed.
func scheduleAnchor(set Settings, tok Token) time.Time {
	anchor := tok.StoredAt
	if anchor.IsZero() {
		anchor = tok.BornAt()
	}
	if set.ScheduleSetAt.After(anchor) {
		anchor = set.ScheduleSetAt
	}
	return anchor
}

// ScheduledAt is when rotation_schedule wants the next rotation: the first slot after the anchor.
// If that slot has passed (no node could rotate), it is due now; with a rotation_window, only
// while it is less than the window ago: else the earliest missed slot whose window is still open
// (due now), or failing that the next slot. The earliest, not the latest: a slot put off by its
// spread (Plan) must stay put while later slots pass, or a schedule whose slots come faster than
// the spread would never come due. No walk over missed slots: one Next call finds it.
func ScheduledAt(set Settings, tok Token, now time.Time) time.Time {
	s, err := storedSchedules.get(set.RotationSchedule)
	if err != nil {
		return time.Time{} // stored schedules were validated when written
	}
	first := s.Next(scheduleAnchor(set, tok).UTC())
	if first.IsZero() || now.Before(first) || set.RotationWindow == 0 {
		return first
	}
	openSince := now.UTC().Add(-set.RotationWindow) // a slot at or after this has its window open
	if !first.Before(openSince) {
		return first
	}
	return s.Next(openSince.Add(-time.Nanosecond)) // the first slot at or after openSince
}

// policyDueAt is when rotation_period or rotation_schedule wants the next rotation.
func policyDueAt(set Settings, tok Token, now time.Time) (time.Time, Reason) {
	if set.RotationSchedule != "" {
		return ScheduledAt(set, tok, now), ReasonSchedule
	}
	if set.RotationPeriod <= 0 {
		return time.Time{}, "" // neither is set (Vault's rotation_period=0): only the expiry deadline
	}
	return tok.BornAt().Add(set.RotationPeriod), ReasonPeriod
}

// ExpiryMargin is how long before exp a token is rotated at the latest: a quarter of its life (at
// most a day), but never less than the budget's MinExpiryMargin, so a once-a-minute tick and a
// slow refresh still come before exp.
func ExpiryMargin(tok Token, b Budget) time.Duration {
	return max(min(max(tok.Lifetime()/4, 0), MaxExpiryMargin), b.MinExpiryMargin())
}

// ExpiryDeadline is exp minus ExpiryMargin; zero when the token has no exp.
func ExpiryDeadline(tok Token, b Budget) time.Time {
	if tok.ExpiresAt.IsZero() {
		return time.Time{}
	}
	return tok.ExpiresAt.Add(-ExpiryMargin(tok, b))
}

// effectiveSpread is tok's spread as Plan applies it: never so much that a fresh token is due at
// once.
func effectiveSpread(tok Token) time.Duration {
	if life := tok.Lifetime(); life > 0 {
		return min(tok.Spread, life/10)
	}
	return tok.Spread
}

// PastExpiryDeadline says whether now is at or past tok's expiry deadline as Plan sets it (put
// off earlier by the spread). A rotation due then must not wait for anything, whatever rule made
// it due: one that came due by rotation_period before the deadline keeps that reason after it.
func PastExpiryDeadline(set Settings, tok Token, now time.Time) bool {
	deadline := ExpiryDeadline(tok, set.Budget())
	return !deadline.IsZero() && !now.Before(deadline.Add(-effectiveSpread(tok)))
}

// TooShortLived says a token lives less than the budget's MinExpiryMargin: Vault's tick and one
// refresh may not fit between its birth and its expiry, so it may die unrotated.
func TooShortLived(tok Token, b Budget) bool {
	life := tok.Lifetime()
	return life > 0 && life < b.MinExpiryMargin()
}

// Plan is when the next rotation is attempted and why; zero when nothing will be sent on its own
// (automated rotation off, or the token known lost).
func Plan(set Settings, st Status, tok Token, now time.Time) (time.Time, Reason) {
	if set.DisableAutomatedRotation || st.LoginTokenLost {
		return time.Time{}, ""
	}
	next, reason := policyDueAt(set, tok, now)
	spread := effectiveSpread(tok)
	if !next.IsZero() {
		next = next.Add(spread)
	}
	deadline := ExpiryDeadline(tok, set.Budget())
	// A herd that reaches its expiry deadline together (a period past the deadline) is spread
	// too, before the deadline, never after it.
	if spreadDeadline := deadline.Add(-spread); !deadline.IsZero() && (next.IsZero() || spreadDeadline.Before(next)) {
		next, reason = spreadDeadline, ReasonExpiry
	}
	if st.RotationFailures > 0 && !st.LastRotationErrorAt.IsZero() {
		retry := st.LastRotationErrorAt.Add(RetryDelay(st.RotationFailures))
		if st.RetryNotBefore.After(retry) {
			retry = st.RetryNotBefore // inabit's Retry-After, capped when it was recorded
		}
		// A retry never comes before the rotation is due: a failed rotate-root does not start
		// automated attempts ahead of rotation_period or rotation_schedule.
		if retry.After(next) {
			next, reason = retry, ReasonRetry
			if !deadline.IsZero() && deadline.Before(next) {
				// Neither the backoff nor a Retry-After may let the token expire between two
				// attempts: at the deadline, still at most one attempt a tick.
				next, reason = deadline, ReasonExpiry
				if floor := st.LastRotationErrorAt.Add(TickInterval); next.Before(floor) {
					next = floor
				}
			}
		}
	}
	if st.OutcomeCheckAt.After(next) {
		next, reason = st.OutcomeCheckAt, ReasonOutcomeCheck
	}
	return next, reason
}
