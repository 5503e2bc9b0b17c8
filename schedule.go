package inabit

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
// they say, the token's expiry wins: a token with an exp is rotated by exp minus a quarter of its
// life (at most a day), and the backoff after failures never pushes an attempt past that.

// Why the next rotation happens when it does; also the trigger of the rotate events it causes.
const (
	reasonPeriod       = "rotation_period"
	reasonSchedule     = "rotation_schedule"
	reasonExpiry       = "expiry"
	reasonRetry        = "retry"
	reasonOutcomeCheck = "outcome_check"

	// minRotationWindow is Vault's own minimum (sdk/rotation).
	minRotationWindow = time.Hour
	maxRotationWindow = maxRotationPeriod
	// maxCatchUpSlots bounds the walk over slots missed while Vault was down.
	maxCatchUpSlots = 100_000
)

// The 5-field parser of Vault's SDK: minute hour day-of-month month day-of-week.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow)

// parsedSchedules memoises parsing: the planned rotation is worked out on every token read.
var parsedSchedules sync.Map // string -> cron.Schedule

func parseSchedule(expr string) (cron.Schedule, error) {
	if s, ok := parsedSchedules.Load(expr); ok {
		return s.(cron.Schedule), nil
	}
	if strings.Contains(expr, "TZ=") {
		return nil, fmt.Errorf("%s %q names a time zone; it is always evaluated in UTC, so drop the TZ= prefix", fieldRotationSchedule, expr)
	}
	s, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%s %q is not a 5-field cron expression (minute hour day-of-month month day-of-week, in UTC; for example \"0 10 * * 2\" is Tuesdays 10:00): %v",
			fieldRotationSchedule, expr, err)
	}
	parsedSchedules.Store(expr, s)
	return s, nil
}

// slotGapAtLeast finds two consecutive slots at least limit apart within a year after from, and
// returns how far apart they are; zero when there are none. It samples every limit/2 (any such gap
// contains a sample followed by limit/2 without a slot) and measures exactly only around those,
// so an every-minute schedule costs a few hundred Next calls, not half a million.
func slotGapAtLeast(s cron.Schedule, from time.Time, limit time.Duration) time.Duration {
	from = from.UTC()
	first := s.Next(from)
	if first.IsZero() {
		return limit
	}
	step := max(limit/2, time.Minute)
	horizon := first.Add(366*24*time.Hour + limit)
	for t := first; t.Before(horizon); t = t.Add(step) {
		next := s.Next(t)
		if next.IsZero() {
			return limit // it stops firing
		}
		if next.Sub(t) < step {
			continue
		}
		// The last slot before next: walk from limit before t (slots never precede first).
		walkFrom := t.Add(-limit)
		if walkFrom.Before(first) {
			walkFrom = first.Add(-time.Nanosecond)
		}
		last := time.Time{}
		for x := s.Next(walkFrom); !x.IsZero() && x.Before(next); x = s.Next(x) {
			last = x
		}
		if !last.IsZero() && next.Sub(last) >= limit {
			return next.Sub(last)
		}
	}
	return 0
}

// scheduleAnchor is the later of when the current token came into Vault's hands (written or
// rotated) and when the schedule was written: a slot before either is not one that was missed.
func (c *inabitConfig) scheduleAnchor() time.Time {
	anchor := c.LoginTokenStoredAt
	if anchor.IsZero() {
		anchor = c.tokenBornAt()
	}
	if c.ScheduleSetAt.After(anchor) {
		anchor = c.ScheduleSetAt
	}
	return anchor
}

// scheduledAt is when rotation_schedule wants the next rotation: the first slot after the anchor.
// If that slot has passed (no node could rotate), it is due now; with a rotation_window, only
// while the latest missed slot is less than the window ago, else at the next slot.
func (c *inabitConfig) scheduledAt(now time.Time) time.Time {
	s, err := parseSchedule(c.RotationSchedule)
	if err != nil {
		return time.Time{} // stored schedules were validated when written
	}
	first := s.Next(c.scheduleAnchor().UTC())
	if first.IsZero() || now.Before(first) || c.RotationWindow == 0 {
		return first
	}
	last := first
	for i := 0; i < maxCatchUpSlots; i++ {
		next := s.Next(last)
		if next.IsZero() || next.After(now) {
			break
		}
		last = next
	}
	if !now.After(last.Add(c.RotationWindow)) {
		return last
	}
	return s.Next(now.UTC())
}

// policyDueAt is when rotation_period or rotation_schedule wants the next rotation.
func (c *inabitConfig) policyDueAt(now time.Time) (time.Time, string) {
	if c.RotationSchedule != "" {
		return c.scheduledAt(now), reasonSchedule
	}
	return c.tokenBornAt().Add(c.RotationPeriod), reasonPeriod
}

// rotationDueAt is the policy's time, or the expiry deadline if that comes first.
func (c *inabitConfig) rotationDueAt(now time.Time) (time.Time, string) {
	due, reason := c.policyDueAt(now)
	if deadline := c.expiryDeadline(); !deadline.IsZero() && (due.IsZero() || deadline.Before(due)) {
		return deadline, reasonExpiry
	}
	return due, reason
}

// expiryDeadline is exp minus a margin of a quarter of the token's life (at most a day); zero
// when the token has no exp.
func (c *inabitConfig) expiryDeadline() time.Time { return c.deadlineFor(c.claims()) }

// deadlineFor is expiryDeadline for claims the caller already parsed.
func (c *inabitConfig) deadlineFor(cl tokenClaims) time.Time {
	exp := cl.ExpiresAt
	if exp.IsZero() {
		return time.Time{}
	}
	life := exp.Sub(c.bornAt(cl))
	return exp.Add(-min(max(life/4, 0), maxExpiryMargin))
}

// plannedRotation is when the next rotation is attempted and why; zero when nothing will be sent
// on its own (automated rotation off, or the token known lost).
func (c *inabitConfig) plannedRotation(now time.Time) (time.Time, string) {
	if c.DisableAutomatedRotation || c.LoginTokenLost {
		return time.Time{}, ""
	}
	next, reason := c.rotationDueAt(now)
	if c.RotationFailures > 0 && !c.LastRotationErrorAt.IsZero() {
		retry := c.LastRotationErrorAt.Add(rotationRetryDelay(c.RotationFailures))
		if c.RetryNotBefore.After(retry) {
			retry = c.RetryNotBefore // inabit's Retry-After
		}
		// A retry never comes before the rotation is due: a failed rotate-root does not start
		// automated attempts ahead of rotation_period or rotation_schedule.
		if retry.After(next) {
			next, reason = retry, reasonRetry
			if deadline := c.expiryDeadline(); !deadline.IsZero() && deadline.Before(next) {
				// Backing off past the deadline would let the token expire between two attempts;
				// still at most one attempt a minute, and never against inabit's Retry-After.
				next, reason = deadline, reasonExpiry
				for _, floor := range []time.Time{c.LastRotationErrorAt.Add(time.Minute), c.RetryNotBefore} {
					if next.Before(floor) {
						next = floor
					}
				}
			}
		}
	}
	if c.OutcomeCheckAt.After(next) {
		next, reason = c.OutcomeCheckAt, reasonOutcomeCheck
	}
	return next, reason
}

// nextRotationAt is plannedRotation's time.
func (c *inabitConfig) nextRotationAt(now time.Time) time.Time {
	t, _ := c.plannedRotation(now)
	return t
}

// scheduleWarning says, to every token reader, when the login token's expiry overrides the
// operator's rotation_period or rotation_schedule; empty otherwise. claims are the login token's,
// memoised by the caller: parsing the JWT here on every read made it 90 % of the read path.
func (c *inabitConfig) scheduleWarning(claims tokenClaims, now time.Time, mount string) string {
	if c.DisableAutomatedRotation || c.LoginTokenLost {
		return ""
	}
	deadline := c.deadlineFor(claims)
	if deadline.IsZero() {
		return ""
	}
	if c.RotationSchedule == "" {
		life := claims.ExpiresAt.Sub(c.bornAt(claims))
		if life <= 0 || life >= c.RotationPeriod {
			return ""
		}
		return fmt.Sprintf("the inabit login token lives %s, shorter than rotation_period (%s): it is rotated at %s, before it expires; "+
			"set rotation_period below its lifetime in %sconfig to rotate on your own terms.", life.Truncate(time.Second), c.RotationPeriod, formatTime(deadline), mount)
	}
	if slot := c.scheduledAt(now); slot.IsZero() || slot.After(deadline) {
		return fmt.Sprintf("the next rotation_schedule slot (%s) comes after the inabit login token must be rotated (it expires at %s): "+
			"it is rotated at %s instead.", formatTime(slot), formatTime(claims.ExpiresAt), formatTime(deadline))
	}
	return ""
}
