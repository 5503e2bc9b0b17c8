package rotation

import (
	"testing"
	"time"
)

// TestSlotGapAtLeastFindsTheGapsATokenCannotOutlive is what config validation refuses a schedule
// by: two consecutive slots at least the token's lifetime apart, anywhere in the year after
// from, measured exactly; a gap exactly as long as the lifetime counts.
func TestSlotGapAtLeastFindsTheGapsATokenCannotOutlive(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		name  string
		expr  string
		from  string
		limit time.Duration
		want  time.Duration
	}{
		{"every minute, a minute's token", "* * * * *", "2027-01-01T00:00:00Z", time.Minute, time.Minute},
		{"every minute, an hour's token", "* * * * *", "2027-01-01T00:00:00Z", time.Hour, 0},
		{"hourly, an hour's token", "0 * * * *", "2027-01-01T00:00:00Z", time.Hour, time.Hour},
		{"daily, a day's token", "0 0 * * *", "2027-01-01T00:00:00Z", day, day},
		{"daily, a day's token, from mid-morning", "0 0 * * *", "2027-01-01T09:17:00Z", day, day},
		{"daily, a longer token", "0 0 * * *", "2027-01-01T00:00:00Z", day + time.Second, 0},
		{"weekly, a three-day token", "0 10 * * 2", "2026-12-01T00:00:00Z", 3 * day, 7 * day},
		{"the first slot opens the gap", "0 10 1,2 1 *", "2027-01-02T00:00:00Z", 100 * day, 364 * day},
		{"the gap opens in November", "0 0 1 1-11 *", "2026-12-31T23:59:59Z", 60 * day, 61 * day},
		{"a short gap late in the year", "0 0 * 1-11 *", "2027-01-01T00:00:00Z", 2 * day, 32 * day},
		{"never fires", "0 0 30 2 *", "2027-01-01T00:00:00Z", day, day},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := ParseSchedule(tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got := SlotGapAtLeast(s, utc(tc.from), tc.limit); got != tc.want {
				t.Fatalf("SlotGapAtLeast(%q, %s, %s) = %s, want %s", tc.expr, tc.from, tc.limit, got, tc.want)
			}
		})
	}
}
