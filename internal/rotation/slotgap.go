package rotation

import (
	"time"

	"github.com/robfig/cron/v3"
)

// SlotGapAtLeast finds two consecutive slots at least limit apart within a year after from, and
// returns how far apart they are; zero when there are none. It samples every limit/2 (any such gap
// contains a sample followed by limit/2 without a slot) and measures exactly only around those,
// so an every-minute schedule costs a few hundred Next calls, not half a million.
func SlotGapAtLeast(s cron.Schedule, from time.Time, limit time.Duration) time.Duration {
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
