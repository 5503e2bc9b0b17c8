package rotation

import (
	"math/rand"
	"testing"
	"time"
)

func TestSpread_NoneWhileTheProcessServesAFewMounts(t *testing.T) {
	set := Settings{RotationPeriod: 360 * time.Hour}
	for mounts := 0; mounts < SpreadMinMounts; mounts++ {
		if s := Spread(set, 123456789, mounts); s != 0 {
			t.Fatalf("%d mounts: spread %s, want none", mounts, s)
		}
	}
	if Spread(set, 123456789, SpreadMinMounts) == 0 {
		t.Fatal("no spread at SpreadMinMounts mounts")
	}
}

func TestSpread_StaysInsideTheWindowThePolicyAllows(t *testing.T) {
	cases := []struct {
		name string
		set  Settings
		want time.Duration
	}{
		{"a tenth of a short period", Settings{RotationPeriod: time.Hour}, 6 * time.Minute},
		{"at most MaxSpread", Settings{RotationPeriod: 360 * time.Hour}, MaxSpread},
		{"half the rotation_window", Settings{RotationSchedule: "0 3 * * *", RotationWindow: 20 * time.Minute}, 10 * time.Minute},
		{"MaxSpread of a long window", Settings{RotationSchedule: "0 3 * * *", RotationWindow: 6 * time.Hour}, MaxSpread},
		{"an exact slot: none", Settings{RotationSchedule: "0 3 * * *"}, 0},
		{"no policy: none", Settings{}, 0},
	}
	rng := rand.New(rand.NewSource(1))
	for _, tc := range cases {
		if got := SpreadWindow(tc.set); got != tc.want {
			t.Errorf("%s: window %s, want %s", tc.name, got, tc.want)
		}
		for i := 0; i < 1000; i++ {
			s := Spread(tc.set, rng.Uint64(), 500)
			if s < 0 || (tc.want == 0 && s != 0) || (tc.want > 0 && s >= tc.want) {
				t.Fatalf("%s: spread %s outside [0, %s)", tc.name, s, tc.want)
			}
		}
	}
}

// 500 mounts due in the same minute are spread over the window: no minute of it gets more than
// twice its share.
func TestSpread_SpreadsManyTokensEvenlyOverTheWindow(t *testing.T) {
	set := Settings{RotationPeriod: 360 * time.Hour}
	rng := rand.New(rand.NewSource(7))
	perMinute := map[time.Duration]int{}
	for i := 0; i < 500; i++ {
		perMinute[Spread(set, rng.Uint64(), 500).Truncate(time.Minute)]++
	}
	share := 500 / int(MaxSpread/time.Minute)
	for m := time.Duration(0); m < MaxSpread; m += time.Minute {
		if perMinute[m] > 2*share || perMinute[m] == 0 {
			t.Errorf("minute %s of the window: %d rotations, share %d", m, perMinute[m], share)
		}
	}
}

func TestPlan_SpreadNeverPassesTheExpiryDeadline(t *testing.T) {
	// A 4-day token with a 3-day-and-23-hour-55 period: due 5 minutes before the deadline (exp - 1 day).
	tok := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-05T00:00:00Z"), Spread: 14 * time.Minute}
	set := Settings{RotationPeriod: 71*time.Hour + 55*time.Minute}
	next, reason := Plan(set, Status{}, tok, utc("2026-12-01T01:00:00Z"))
	if want := utc("2026-12-03T23:46:00Z"); !next.Equal(want) || reason != ReasonExpiry {
		t.Fatalf("plan %s (%s), want the deadline less the spread, %s", next, reason, want)
	}
	tok.Spread = time.Minute
	if next, reason = Plan(set, Status{}, tok, utc("2026-12-01T01:00:00Z")); !next.Equal(utc("2026-12-03T23:56:00Z")) || reason != ReasonPeriod {
		t.Fatalf("plan %s (%s), want the period's due time plus the spread", next, reason)
	}
}

// A slot put off by its spread is still inside its rotation_window when the rotation runs, so it
// is rotated then, not skipped to the next slot.
func TestPlan_SpreadSlotIsStillDueWhenItsTurnComes(t *testing.T) {
	set := Settings{RotationSchedule: "0 3 * * *", RotationWindow: time.Hour}
	tok := Token{StoredAt: utc("2026-12-01T12:00:00Z"), Spread: SpreadWindow(set) - time.Second}
	now := utc("2026-12-01T13:00:00Z")
	next, reason := Plan(set, Status{}, tok, now)
	if want := utc("2026-12-02T03:14:59Z"); !next.Equal(want) || reason != ReasonSchedule {
		t.Fatalf("plan %s (%s), want %s", next, reason, want)
	}
	if again, _ := Plan(set, Status{}, tok, next); !again.Equal(next) {
		t.Fatalf("at its turn the plan moved to %s: the slot was skipped", again)
	}
}

// The spread never exceeds a tenth of the token's life: a short-lived token put off by a long
// spread would be due again as soon as it is rotated.
func TestPlan_SpreadIsAtMostATenthOfTheTokensLife(t *testing.T) {
	// A one-hour token: a 14-minute spread is cut to 6.
	tok := Token{IssuedAt: utc("2026-12-01T00:00:00Z"), ExpiresAt: utc("2026-12-01T01:00:00Z"), Spread: 14 * time.Minute}
	set := Settings{RotationPeriod: 30 * time.Minute}
	next, reason := Plan(set, Status{}, tok, utc("2026-12-01T00:01:00Z"))
	if want := utc("2026-12-01T00:36:00Z"); !next.Equal(want) || reason != ReasonPeriod {
		t.Fatalf("plan %s (%s), want the period plus a tenth of the life, %s", next, reason, want)
	}
}
