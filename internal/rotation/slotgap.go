package rotation

import (
	"math/bits"
	"slices"
	"time"

	"github.com/robfig/cron/v3"
)

// oneDay is a UTC day: no zone changes in UTC.
const oneDay = 24 * time.Hour

// SlotGapAtLeast finds the first two consecutive slots at least limit apart, the earlier one
// before the horizon: a year and limit after the first slot after from, so every gap opening
// within a year after from is seen. It returns how far apart they are; zero when there are none;
// limit when the schedule never fires or stops firing (Next finds no slot within five years).
//
// Config writes call it under the mount lock, so its cost must not grow with the number of
// slots: an every-minute schedule has half a million in a year. For a *cron.SpecSchedule
// evaluated in UTC it walks firing days instead, one Next call each; any other Schedule is
// sampled.
func SlotGapAtLeast(s cron.Schedule, from time.Time, limit time.Duration) time.Duration {
	first := s.Next(from.UTC())
	if first.IsZero() {
		return limit
	}
	horizon := first.Add(366*oneDay + limit)
	if spec := utcSpec(s); spec != nil {
		return slotGapByDays(s, spec, first, horizon, limit)
	}
	return slotGapBySampling(s, first, horizon, limit)
}

// specBacked is a Schedule whose Next is that of the SpecSchedule it names. Tests count Next
// calls with one; SlotGapAtLeast treats it as the spec itself.
type specBacked interface {
	specSchedule() *cron.SpecSchedule
}

// utcSpec is the SpecSchedule behind s when every day it fires on has the same slots: it is
// evaluated in UTC (time.Local means "in the zone of the time given", UTC here), where every
// day has 24 hours, and fires on second 0 only, as the 5-field parser makes it. Else nil.
func utcSpec(s cron.Schedule) *cron.SpecSchedule {
	var spec *cron.SpecSchedule
	switch v := s.(type) {
	case *cron.SpecSchedule:
		spec = v
	case specBacked:
		spec = v.specSchedule()
	}
	if spec == nil || spec.Second != 1<<0 || spec.Location != time.Local && spec.Location != time.UTC {
		return nil
	}
	return spec
}

// slotGapByDays is SlotGapAtLeast for a UTC SpecSchedule. The month, day-of-month and
// day-of-week fields say which days fire; hour and minute say when, the same on every such day.
// So the gaps are those between a day's own slots, the same every day, and those from a firing
// day's last slot to the next firing day's first, which Next finds (keeping robfig's rules for
// day-of-month with day-of-week). The walk visits each firing day up to the horizon once: about
// 366 + limit/24h Next calls, whatever the slots per day.
func slotGapByDays(s cron.Schedule, spec *cron.SpecSchedule, first, horizon time.Time, limit time.Duration) time.Duration {
	slots := daySlots(spec)
	today := first.Truncate(oneDay) // midnight UTC: Truncate counts from year 1, a UTC midnight
	// On the first day only the slots from first on count.
	start, _ := slices.BinarySearch(slots, first.Sub(today))
	wide, everyDay := firstGapAtLeast(slots, start, limit), firstGapAtLeast(slots, 0, limit)
	for {
		if wide >= 0 {
			// A day's own gaps come before the one after its last slot. This is the first or
			// the second firing day (every firing day has the gap), within a day and limit of
			// first: long before the horizon.
			return slots[wide+1] - slots[wide]
		}
		last := today.Add(slots[len(slots)-1])
		if !last.Before(horizon) {
			return 0
		}
		// The next firing day's first slot. Asked from a second before the next day's first
		// slot time (no slot falls between last and that), Next finds it at once when that
		// day fires, instead of stepping through the seconds, minutes and hours in between (8
		// to 25 times cheaper). (Next gives up five years after the year it is asked from, which
		// may be the next one; no schedule that fires on December 31st has gaps that long.)
		next := s.Next(today.Add(oneDay + slots[0] - time.Second))
		if next.IsZero() {
			return limit // it stops firing
		}
		if gap := next.Sub(last); gap >= limit {
			return gap
		}
		today, wide = next.Truncate(oneDay), everyDay
	}
}

// daySlots lists the times of day a firing day has slots at, in order: every Hour bit with every
// Minute bit. Bit 63 marks a '*' in the expression and is no hour or minute.
func daySlots(spec *cron.SpecSchedule) []time.Duration {
	slots := make([]time.Duration, 0, bits.OnesCount64(spec.Hour&(1<<24-1))*bits.OnesCount64(spec.Minute&(1<<60-1)))
	for h := range 24 {
		for m := range 60 {
			if spec.Hour&(1<<h) != 0 && spec.Minute&(1<<m) != 0 {
				slots = append(slots, time.Duration(h)*time.Hour+time.Duration(m)*time.Minute)
			}
		}
	}
	return slots
}

// firstGapAtLeast is the first i >= start with slots[i+1]-slots[i] >= limit, or -1.
func firstGapAtLeast(slots []time.Duration, start int, limit time.Duration) int {
	for i := start; i+1 < len(slots); i++ {
		if slots[i+1]-slots[i] >= limit {
			return i
		}
	}
	return -1
}

// slotGapBySampling is SlotGapAtLeast for any other Schedule. It samples every limit/2 (any gap
// at least limit long contains a sample followed by limit/2 without a slot) and measures exactly
// only around those; it sees every gap that opens within a year after the first slot, but may
// miss one that opens later, before the horizon. An every-minute schedule with a limit under two
// minutes costs millions of Next calls.
func slotGapBySampling(s cron.Schedule, first, horizon time.Time, limit time.Duration) time.Duration {
	step := max(limit/2, time.Minute)
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
