package e2e

import (
	"sync"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// rotationClock records when inabit saw each refresh, polling the mock's counter.
type rotationClock struct {
	mu    sync.Mutex
	times []time.Time
	stop  chan struct{}
	done  chan struct{}
}

func watchRotations(mock *mockctl.Mock) *rotationClock {
	r := &rotationClock{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(r.done)
		seen := mock.Calls(mockctl.OpRefresh)
		for {
			select {
			case <-r.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if n := mock.Calls(mockctl.OpRefresh); n > seen {
				r.mu.Lock()
				for ; seen < n; seen++ {
					r.times = append(r.times, time.Now().UTC())
				}
				r.mu.Unlock()
			}
		}
	}()
	return r
}

func (r *rotationClock) since(t time.Time) []time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []time.Time
	for _, x := range r.times {
		if !x.Before(t) {
			out = append(out, x)
		}
	}
	return out
}

// TestScheduleRotatesOnTheMinute: with rotation_schedule "* * * * *" the active node rotates once
// per slot, within seconds after the minute starts; writing rotation_period switches the schedule
// off, and writing the schedule again brings it back at the next slot, not at once.
func TestScheduleRotatesOnTheMinute(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"rotation_schedule": "* * * * *"})
	clock := watchRotations(e.mock)
	defer func() { close(clock.stop); <-clock.done }()

	start := time.Now().UTC()
	// Three whole slots after the one in progress.
	end := start.Truncate(time.Minute).Add(4*time.Minute + 20*time.Second)
	time.Sleep(time.Until(end))
	got := clock.since(start)
	slots := map[time.Time]int{}
	for _, at := range got {
		slots[at.Truncate(time.Minute)]++
		if at.Sub(at.Truncate(time.Minute)) > 10*time.Second {
			t.Errorf("rotation at %s is not on the minute", at.Format(time.RFC3339Nano))
		}
	}
	for slot := start.Truncate(time.Minute).Add(time.Minute); slot.Before(end.Truncate(time.Minute).Add(time.Second)); slot = slot.Add(time.Minute) {
		if slots[slot] != 1 {
			t.Errorf("slot %s had %d rotations, want 1", slot.Format("15:04"), slots[slot])
		}
	}
	t.Logf("rotation times: %v", got)

	// rotation_period clears the schedule: no rotation for a whole minute and more.
	e.configure(map[string]interface{}{"rotation_period": "1h"})
	if cfg := e.readConfig(); cfg["rotation_schedule"] != "" || cfg["next_rotation_reason"] != "rotation_period" {
		t.Fatalf("rotation_period did not replace the schedule: %v", cfg)
	}
	quiet := time.Now().UTC()
	time.Sleep(70 * time.Second)
	if n := len(clock.since(quiet)); n != 0 {
		t.Fatalf("%d rotations after switching to rotation_period=1h", n)
	}

	// Back to the schedule: the slots missed while it was off do not count; the next one does.
	e.configure(map[string]interface{}{"rotation_schedule": "* * * * *"})
	back := time.Now().UTC()
	next := back.Truncate(time.Minute).Add(time.Minute)
	time.Sleep(time.Until(next.Add(15 * time.Second)))
	again := clock.since(back)
	if len(again) != 1 || again[0].Before(next) {
		t.Fatalf("after switching back: rotations at %v, want exactly one at or after %s", again, next.Format(time.RFC3339))
	}
	if cfg := e.readConfig(); cfg["last_rotation_error"] != "" || !e.mock.LoginTokenValid(e.mock.LoginToken()) {
		t.Fatalf("mount unhealthy after scheduled rotations: %v", cfg["last_rotation_error"])
	}
	e.readToken(e.client())
}
