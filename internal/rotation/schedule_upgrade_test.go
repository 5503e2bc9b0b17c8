package rotation

import (
	"strings"
	"testing"
	"time"
)

// rotation_schedule is now capped at 512 bytes, and the cap is also applied on the
// read path (storedSchedules.get -> ParseSchedule). A schedule a previous version accepted and
// stored (no cap before 17.5; here "10:00 daily" with its minute written 300 times) then parses
// to nothing: ScheduledAt is zero, Plan plans no rotation at all for a token without exp (and
// only the expiry deadline for one with it), and nobody is told.
func TestAStoredScheduleOverTheNewCapStillFires(t *testing.T) {
	expr := strings.Repeat("0,", 300) + "0 10 * * *"
	if len(expr) <= MaxScheduleLen {
		t.Fatalf("expression is only %d bytes", len(expr))
	}
	if _, err := cronParser.Parse(expr); err != nil {
		t.Fatalf("not a valid cron expression: %v", err)
	}
	set := Settings{RotationSchedule: expr}
	tok := Token{StoredAt: utc("2026-12-01T12:00:00Z")}
	next, reason := Plan(set, Status{}, tok, utc("2026-12-01T13:00:00Z"))
	if want := utc("2026-12-02T10:00:00Z"); !next.Equal(want) {
		t.Fatalf("plan %v (%q), want the next slot %s", next, reason, want.Format(time.RFC3339))
	}
}
