package rotation

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/robfig/cron/v3"
)

// TestSlotGapAtLeastMatchesTheSlotBySlotWalk holds SlotGapAtLeast to its specification on
// random cron expressions (lists, ranges, steps, stars in every field; Feb 29th, the 31st,
// day-of-month with day-of-week) from random times and at random limits, among them the
// schedule's own gaps and a second either side: the specification is slotWalk.gapAtLeast, a
// walk over every slot with Next. The sampling kept for schedules that are no
// *cron.SpecSchedule is held to it where it promises to be (no gap, or one opening within a
// year); past that it may miss a gap, and finds none shorter than limit. The seed is fixed;
// 3000 more expressions from five other seeds agreed too.
func TestSlotGapAtLeastMatchesTheSlotBySlotWalk(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 5))
	checked, skipped, sampled := 0, 0, 0
	for n := 0; n < 150; n++ {
		expr := randomCron(r)
		s, err := ParseSchedule(expr)
		if err != nil {
			t.Fatalf("generated %q: %v", expr, err)
		}
		from := randomFrom(r)
		limits := randomLimits(r, walkSlots(s, from, 0, 2000))
		w := walkSlots(s, from, maxDuration(limits), 4000)
		for _, limit := range limits {
			want, at, ok := w.gapAtLeast(limit)
			if !ok {
				skipped++ // the walk ran out of budget before deciding (dense schedules, long limits)
				continue
			}
			checked++
			if got := SlotGapAtLeast(s, from, limit); got != want {
				t.Errorf("SlotGapAtLeast(%q, %s, %s) = %s, the slot-by-slot walk says %s (from the slot at %s)",
					expr, FormatTime(from), limit, got, want, FormatTime(at))
			}
			if limit < 24*time.Hour || len(w.slots) > 1000 {
				continue // sampling dense schedules is what the walk by days replaced: too slow
			}
			sampled++
			got := SlotGapAtLeast(plainSchedule{s}, from, limit)
			withinAYear := !at.IsZero() && at.Before(w.first.Add(366*24*time.Hour))
			if (want == 0 || withinAYear) && got != want || got != 0 && got < limit {
				t.Errorf("sampling %q from %s at %s: %s, the slot-by-slot walk says %s (from the slot at %s)",
					expr, FormatTime(from), limit, got, want, FormatTime(at))
			}
		}
	}
	if skipped*5 > checked {
		t.Fatalf("only %d (expression, limit) pairs checked, %d skipped", checked, skipped)
	}
	t.Logf("%d checked against the walk (%d also sampled), %d skipped", checked, sampled, skipped)
}

// TestSlotGapAtLeastSamplesWhatItCannotWalkByDays: a SpecSchedule the 5-field parser does not
// make, firing on more seconds than :00 or evaluated in another zone (whose days do not start
// at midnight UTC), has no identical UTC days; SlotGapAtLeast samples it, and agrees with the
// slot-by-slot walk.
func TestSlotGapAtLeastSamplesWhatItCannotWalkByDays(t *testing.T) {
	all := func(lo, hi uint) uint64 { return (1<<(hi+1) - 1) &^ (1<<lo - 1) }
	from := utc("2027-01-01T00:00:00Z")
	cases := []struct {
		name  string
		spec  *cron.SpecSchedule
		limit time.Duration
	}{
		{"10:00 and 10:01 daily, on seconds 0 and 30", &cron.SpecSchedule{Second: 1 | 1<<30, Minute: 1 | 1<<1, Hour: 1 << 10, Dom: all(1, 31) | 1<<63, Month: all(1, 12), Dow: all(0, 6) | 1<<63, Location: time.UTC}, 45 * time.Second},
		{"daily at 23:00 in UTC+1", &cron.SpecSchedule{Second: 1, Minute: 1, Hour: 1 << 23, Dom: all(1, 31) | 1<<63, Month: all(1, 12), Dow: all(0, 6) | 1<<63, Location: time.FixedZone("UTC+1", 3600)}, 24 * time.Hour},
	}
	for _, tc := range cases {
		want, _, ok := walkSlots(tc.spec, from, tc.limit, 2_000_000).gapAtLeast(tc.limit)
		if got := SlotGapAtLeast(tc.spec, from, tc.limit); !ok || got != want {
			t.Errorf("%s: SlotGapAtLeast = %s, the slot-by-slot walk says %s", tc.name, got, want)
		}
	}
}

// slotWalk is every slot from the first after from, as Next gives them.
type slotWalk struct {
	first   time.Time
	slots   []time.Time
	stopped bool // Next found no slot after the last one
}

// walkSlots walks from the first slot after from until a slot a year and maxLimit after the
// first one, or budget slots.
func walkSlots(s cron.Schedule, from time.Time, maxLimit time.Duration, budget int) slotWalk {
	var w slotWalk
	x := s.Next(from.UTC())
	if x.IsZero() {
		w.stopped = true
		return w
	}
	w.first = x
	until := x.Add(366*24*time.Hour + maxLimit)
	for {
		w.slots = append(w.slots, x)
		if !x.Before(until) || len(w.slots) >= budget {
			return w
		}
		if x = s.Next(x); x.IsZero() {
			w.stopped = true
			return w
		}
	}
}

// gapAtLeast is SlotGapAtLeast's specification: the first two consecutive slots at least limit
// apart, the earlier one before the horizon (a year and limit after the first slot), give
// their gap; a schedule that never fires, or stops (Next finds no slot after one before the
// horizon), gives limit; else 0. at is the earlier slot. ok is false when the walk stopped
// short of deciding.
func (w slotWalk) gapAtLeast(limit time.Duration) (gap time.Duration, at time.Time, ok bool) {
	if len(w.slots) == 0 {
		return limit, time.Time{}, true
	}
	horizon := w.first.Add(366*24*time.Hour + limit)
	for i, a := range w.slots {
		switch {
		case !a.Before(horizon):
			return 0, time.Time{}, true
		case i+1 < len(w.slots):
			if g := w.slots[i+1].Sub(a); g >= limit {
				return g, a, true
			}
		case w.stopped:
			return limit, a, true
		}
	}
	return 0, time.Time{}, false
}

// randomCron writes a 5-field expression; stars and short steps, which make schedules dense,
// are rarer in the minute field so the walk stays affordable.
func randomCron(r *rand.Rand) string {
	return strings.Join([]string{
		randomField(r, 0, 59, 3), randomField(r, 0, 23, 30), randomField(r, 1, 31, 45),
		randomField(r, 1, 12, 45), randomField(r, 0, 6, 55),
	}, " ")
}

// randomField is '*' with starPercent chance, else a list of one to three of: a value, a range,
// a stepped range or star, "N/step", and now and then '*' or '?' (which set the star bit that
// decides how day-of-month and day-of-week combine).
func randomField(r *rand.Rand, lo, hi, starPercent int) string {
	if r.IntN(100) < starPercent {
		return "*"
	}
	parts := make([]string, 1+r.IntN(2)*r.IntN(3))
	for i := range parts {
		a := lo + r.IntN(hi-lo+1)
		b := a + r.IntN(hi-a+1)
		k := 2 + r.IntN(hi-lo)
		switch r.IntN(12) {
		case 0, 1, 2, 3, 4:
			parts[i] = fmt.Sprint(a)
		case 5, 6:
			parts[i] = fmt.Sprintf("%d-%d", a, b)
		case 7:
			parts[i] = fmt.Sprintf("%d-%d/%d", a, b, k)
		case 8:
			parts[i] = fmt.Sprintf("*/%d", k)
		case 9:
			parts[i] = fmt.Sprintf("%d/%d", a, k)
		case 10:
			parts[i] = fmt.Sprint(hi - r.IntN(3)) // the 29th to 31st, December, Saturday
		default:
			parts[i] = []string{"*", "?"}[r.IntN(2)]
		}
	}
	return strings.Join(parts, ",")
}

// randomFrom is a time in 2025-2035, on a minute boundary a third of the time (a slot itself,
// maybe) or a nanosecond before one; now and then in 2095-2099, where February 29th skips 2100.
func randomFrom(r *rand.Rand) time.Time {
	start, years := utc("2025-01-01T00:00:00Z"), 10
	if r.IntN(20) == 0 {
		start, years = utc("2095-01-01T00:00:00Z"), 5
	}
	t := start.Add(time.Duration(r.Int64N(int64(years) * 365 * 24 * int64(time.Hour))))
	switch r.IntN(6) {
	case 0, 1:
		t = t.Truncate(time.Minute)
	case 2:
		t = t.Truncate(time.Minute).Add(-time.Nanosecond)
	}
	return t
}

// randomLimits mixes fixed limits (under a minute to four years), random ones, and gaps of the
// schedule itself with a second either side, where ">= limit" is decided.
func randomLimits(r *rand.Rand, w slotWalk) []time.Duration {
	day := 24 * time.Hour
	limits := []time.Duration{time.Second, 59 * time.Second, time.Minute, 61 * time.Second, 90 * time.Second,
		time.Hour, day, 7 * day, 31 * day, 366 * day,
		1 + time.Duration(r.Int64N(int64(3*day))), 1 + time.Duration(r.Int64N(int64(400*day)))}
	var largest time.Duration
	for i := 0; i+1 < len(w.slots); i++ {
		largest = max(largest, w.slots[i+1].Sub(w.slots[i]))
	}
	if largest > 0 {
		limits = append(limits, largest, largest+time.Second)
	}
	for k := 0; k < 3 && len(w.slots) > 1; k++ {
		i := r.IntN(len(w.slots) - 1)
		g := w.slots[i+1].Sub(w.slots[i])
		limits = append(limits, g-time.Second, g, g+time.Second)
	}
	return limits
}

func maxDuration(ds []time.Duration) time.Duration {
	var m time.Duration
	for _, d := range ds {
		m = max(m, d)
	}
	return m
}
