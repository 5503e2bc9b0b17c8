package inabit

// Tests of herd.go: many mounts in one process, due together, never stampede inabit.

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// inFlightAPI counts the refreshes in flight across every mount that uses it, and holds each
// one briefly so that overlapping calls overlap.
type inFlightAPI struct {
	inabitAPI
	now, peak *atomic.Int64
	hold      time.Duration
}

func (a *inFlightAPI) RefreshLoginToken(ctx context.Context, loginToken string) (string, string, error) {
	n := a.now.Add(1)
	defer a.now.Add(-1)
	for p := a.peak.Load(); n > p && !a.peak.CompareAndSwap(p, n); p = a.peak.Load() {
	}
	time.Sleep(a.hold)
	return a.inabitAPI.RefreshLoginToken(ctx, loginToken)
}

// herd is n mounts in this process on one clock, each with its own API user (its own mock).
func herd(t *testing.T, n int, extra map[string]interface{}) (envs []*testEnv, clock *testClock, peak *atomic.Int64) {
	t.Helper()
	clock = newTestClock()
	usePacer(t, clock, false)
	var inFlight atomic.Int64
	peak = &atomic.Int64{}
	for i := 0; i < n; i++ {
		env := newTestEnv(t, mockinabit.Options{Now: clock.now})
		env.clock = clock
		env.b.now, env.b.mono, env.b.sleep = clock.now, clock.mono, clock.sleep
		env.b.newAPI = func(url string, timeout time.Duration) inabitAPI {
			return &inFlightAPI{inabitAPI: newInabitAPI(url, timeout), now: &inFlight, peak: peak, hold: 20 * time.Millisecond}
		}
		env.configure(t, extra)
		envs = append(envs, env)
	}
	return envs, clock, peak
}

// tickAll runs every mount's periodic function at once, as Vault's rollback manager does each
// minute, and waits for them.
func tickAll(t *testing.T, envs []*testEnv) {
	var wg sync.WaitGroup
	for _, env := range envs {
		wg.Add(1)
		go func() { defer wg.Done(); env.tick(t) }()
	}
	wg.Wait()
}

func refreshes(envs []*testEnv) (n int) {
	for _, env := range envs {
		n += env.mock.Calls(mockinabit.OpRefresh)
	}
	return n
}

func assertAllRotatedAndHealthy(t *testing.T, envs []*testEnv) {
	t.Helper()
	for i, env := range envs {
		cfg := storedConfig(t, env)
		if env.mock.Calls(mockinabit.OpRefresh) != 1 || !env.mock.LoginTokenValid(cfg.LoginToken) || cfg.LoginTokenLost || cfg.LastRotationError != "" {
			t.Fatalf("mount %d: %d refreshes, stored token valid %v, lost %v, status %q", i,
				env.mock.Calls(mockinabit.OpRefresh), env.mock.LoginTokenValid(cfg.LoginToken), cfg.LoginTokenLost, cfg.LastRotationError)
		}
	}
}

// 50 mounts whose schedule names the same minute (no window, so no spread) all tick at once: at
// most maxRefreshesInFlight refreshes reach inabit at a time, and every token is rotated.
func TestManyMountsDueAtOnceNeverSendMoreThanFourRefreshesTogether(t *testing.T) {
	envs, clock, peak := herd(t, 50, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	toThreeAM(clock)
	for minute := 0; minute < 3 && refreshes(envs) < len(envs); minute++ {
		tickAll(t, envs)
		clock.advance(time.Minute)
	}
	// The README promises four: a literal, so a change of the constant shows here too.
	if p := peak.Load(); p > 4 || p < 2 {
		t.Fatalf("peak refreshes in flight: %d, want 2..4", p)
	}
	assertAllRotatedAndHealthy(t, envs)
}

// 50 mounts whose tokens were issued together, with one rotation_period, are rotated over the
// spread window, a few a minute, not all in the first minute; all of them within it.
func TestManyMountsDueTogetherAreSpreadOverMinutes(t *testing.T) {
	envs, clock, _ := herd(t, 50, map[string]interface{}{"rotation_period": "24h"})
	clock.advance(24 * time.Hour)
	perMinute := []int{}
	for minute := 0; minute <= int(rotation.MaxSpread/time.Minute); minute++ {
		before := refreshes(envs)
		tickAll(t, envs)
		perMinute = append(perMinute, refreshes(envs)-before)
		clock.advance(time.Minute)
	}
	busiest, minutesUsed := 0, 0
	for _, n := range perMinute {
		busiest = max(busiest, n)
		if n > 0 {
			minutesUsed++
		}
	}
	t.Logf("rotations per minute after the period: %v", perMinute)
	if busiest > len(envs)/4 || minutesUsed < 8 {
		t.Fatalf("rotations per minute %v: busiest %d, %d minutes used; want at most %d in any minute over at least 8",
			perMinute, busiest, minutesUsed, len(envs)/4)
	}
	assertAllRotatedAndHealthy(t, envs)
}

// A few mounts are no herd: each rotates in the minute its period ends.
func TestAFewMountsRotateExactlyWhenDue(t *testing.T) {
	envs, clock, _ := herd(t, rotation.SpreadMinMounts-1, map[string]interface{}{"rotation_period": "24h"})
	clock.advance(24 * time.Hour)
	tickAll(t, envs)
	assertAllRotatedAndHealthy(t, envs)
}

// fillSlots takes every refresh slot until the test ends, as other mounts' rotations would.
func fillSlots(t *testing.T) {
	for i := 0; i < maxRefreshesInFlight; i++ {
		refreshSlots <- struct{}{}
	}
	t.Cleanup(func() {
		for i := 0; i < maxRefreshesInFlight; i++ {
			<-refreshSlots
		}
	})
	old := slotWait
	slotWait = 50 * time.Millisecond
	t.Cleanup(func() { slotWait = old })
}

// While other mounts fill the slots, a rotation that is merely due waits for the next tick...
func TestDueRotationWaitsForASlot(t *testing.T) {
	envs, clock, _ := herd(t, 1, map[string]interface{}{"rotation_period": "24h"})
	fillSlots(t)
	clock.advance(24 * time.Hour)
	tickAll(t, envs)
	if n := refreshes(envs); n != 0 {
		t.Fatalf("%d refreshes sent with every slot taken", n)
	}
}

// ...but one at its expiry deadline goes ahead: a busy process never lets a token expire.
func TestRotationAtTheExpiryDeadlineNeverWaitsForASlot(t *testing.T) {
	// A period just short of the 30-day token's life: its expiry deadline (a day before exp) comes first.
	envs, clock, _ := herd(t, 1, map[string]interface{}{"rotation_period": "719h"})
	fillSlots(t)
	clock.advance(29*24*time.Hour + time.Minute)
	if _, reason := storedConfig(t, envs[0]).plannedRotation(clock.now()); reason != rotation.ReasonExpiry {
		t.Fatalf("setup: the rotation is due for %q, not the expiry deadline", reason)
	}
	tickAll(t, envs)
	assertAllRotatedAndHealthy(t, envs)
}
