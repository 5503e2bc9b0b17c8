package inabit

// Tests of herd.go's pacing: many mounts due together, against an inabit that rate-limits.

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// usePacer gives this test fresh pacers on clock. With advance, their sleep moves clock on
// instead of waiting: mounts ticked one after the other then reach inabit at the virtual times
// the pacer booked. Without, their sleep returns at once (mounts ticked together, as by Vault,
// then see the pace only in how many starts fit in a tick).
func usePacer(t *testing.T, clock *testClock, advance bool) *pacerSet {
	ps := newPacerSet()
	oldPacers, oldClock, oldSleep := herdPacers, pacerClock, pacerSleep
	herdPacers, pacerClock = ps, clock.mono
	pacerSleep = func(ctx context.Context, d time.Duration) error {
		if advance {
			clock.advance(d)
		}
		return ctx.Err()
	}
	t.Cleanup(func() { herdPacers, pacerClock, pacerSleep = oldPacers, oldClock, oldSleep })
	return ps
}

// herdOnOneInabit is n mounts in this process on one clock, each with its own API user of one
// mock inabit (one Vault is one client to inabit: a rate limit counts all of them together).
func herdOnOneInabit(t *testing.T, n int, extra map[string]interface{}) (envs []*testEnv, mock *mockinabit.Server, clock *testClock) {
	t.Helper()
	clock = newTestClock()
	mock, srv := mockinabit.NewHTTPTest(mockinabit.Options{Now: clock.now})
	t.Cleanup(srv.Close)
	users := mock.CreateUsers(n)
	for i := 0; i < n; i++ {
		env := newTestEnv(t, mockinabit.Options{Now: clock.now})
		env.clock, env.mock, env.srv = clock, mock, srv
		env.b.now, env.b.mono, env.b.sleep = clock.now, clock.mono, clock.sleep
		data := map[string]interface{}{"login_token": users[i].LoginToken, "url": srv.URL}
		for k, v := range extra {
			data[k] = v
		}
		if _, err := env.requestOK(logical.UpdateOperation, "config", data); err != nil {
			t.Fatalf("mount %d: config write: %v", i, err)
		}
		envs = append(envs, env)
	}
	return envs, mock, clock
}

// tickInTurn runs each mount's periodic function, one after the other: the pacer's waits move
// the shared clock, so each rotation's calls arrive at inabit at the virtual time it was booked.
func tickInTurn(t *testing.T, envs []*testEnv) {
	for _, env := range envs {
		env.tick(t)
	}
}

// toThreeAM moves clock on to the next 03:00 UTC, the slot of the herds' "0 3 * * *" schedule.
func toThreeAM(clock *testClock) {
	for clock.now().UTC().Hour() != 3 || clock.now().UTC().Minute() != 0 {
		clock.advance(time.Minute)
	}
}

// tickAMinute ticks every mount in turn (tickInTurn), then moves clock on to a minute after the
// tick began: the next tick.
func tickAMinute(t *testing.T, envs []*testEnv, clock *testClock) {
	start := clock.mono()
	tickInTurn(t, envs)
	clock.advance(time.Minute - (clock.mono() - start))
}

// tickUntilRotated runs tickAMinute until every API user was refreshed, most times at most, and
// returns how many ticks ran.
func tickUntilRotated(t *testing.T, envs []*testEnv, mock *mockinabit.Server, clock *testClock, most int) (ticks int) {
	for ; ticks < most; ticks++ {
		if rotated, _ := herdOutcome(t, envs, mock); rotated == len(envs) {
			break
		}
		tickAMinute(t, envs, clock)
	}
	return ticks
}

// refusedCalls is how many calls the mock's rate limit refused (429).
func refusedCalls(mock *mockinabit.Server) int {
	return mock.Limited(mockinabit.OpRefresh) + mock.Limited(mockinabit.OpAccessToken)
}

// busiestRefreshSecond is the most refresh calls the mock saw in one second.
func busiestRefreshSecond(mock *mockinabit.Server) (busiest int) {
	for _, n := range mock.CallsPerSecond(mockinabit.OpRefresh) {
		busiest = max(busiest, n)
	}
	return busiest
}

func herdOutcome(t *testing.T, envs []*testEnv, mock *mockinabit.Server) (rotated, lost int) {
	t.Helper()
	for _, u := range mock.Users() {
		if u.Refreshes == 1 && u.Live {
			rotated++
		}
	}
	for _, env := range envs {
		if storedConfig(t, env).LoginTokenLost {
			lost++
		}
	}
	return rotated, lost
}

// 50 mounts on one rotation_schedule minute, against an inabit that allows 10 calls a second:
// the process starts two rotations a second (a refresh and the access-token call that proves the
// new token each), so inabit refuses nothing, and every token is rotated within a few ticks.
func TestManyMountsDueTogetherStayUnderInabitsRateLimit(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, 50, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	usePacer(t, clock, true)
	toThreeAM(clock)
	mock.SetRateLimit(10)
	ticks := tickUntilRotated(t, envs, mock, clock, 5)
	refused, busiest := refusedCalls(mock), busiestRefreshSecond(mock)
	rotated, lost := herdOutcome(t, envs, mock)
	t.Logf("%d ticks: %d of %d rotated, %d lost, %d calls refused, busiest second %d refreshes", ticks, rotated, len(envs), lost, refused, busiest)
	if refused != 0 || rotated != len(envs) || lost != 0 || ticks > 3 {
		t.Fatalf("%d ticks: %d of %d rotated, %d lost, %d calls refused (429); want all rotated in 3 ticks or fewer, none refused",
			ticks, rotated, len(envs), lost, refused)
	}
	if busiest > 2 {
		t.Fatalf("busiest second carried %d refreshes, want at most 2", busiest)
	}
}

// Against an inabit that allows only 3 calls a second (less than the usual pace sends), the
// first 429s hold every mount's rotation for the Retry-After and slow the pace: a handful of
// calls are refused, not one in four, and every token is still rotated.
func TestARateLimitedHerdSlowsDownRatherThanBeingRefusedOverAndOver(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, 50, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, true).get(envs[0].srv.URL)
	toThreeAM(clock)
	mock.SetRateLimit(3)
	ticks := tickUntilRotated(t, envs, mock, clock, 10)
	refused := refusedCalls(mock)
	calls := mock.Calls(mockinabit.OpRefresh) + mock.Calls(mockinabit.OpAccessToken)
	rotated, lost := herdOutcome(t, envs, mock)
	t.Logf("%d ticks: %d of %d rotated, %d lost, %d of %d calls refused, spacing now %s", ticks, rotated, len(envs), lost, refused, calls, p.Spacing())
	if rotated != len(envs) || lost != 0 || refused > 10 {
		t.Fatalf("%d ticks: %d of %d rotated, %d lost, %d of %d calls refused (429); want all rotated, at most 10 refused",
			ticks, rotated, len(envs), lost, refused, calls)
	}
}

// A 429 that a read meets (any mount, any call) holds the other mounts' scheduled rotations for
// its Retry-After: one Vault is one client to inabit.
func TestA429OnAReadHoldsEveryMountsScheduledRotation(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	usePacer(t, clock, false)
	toThreeAM(clock)
	mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "30", Times: 1})
	if resp, err := envs[0].request(logical.ReadOperation, "token", nil); err == nil && !resp.IsError() {
		t.Fatal("setup: the read met no 429")
	}
	tickAll(t, envs)
	if n := mock.Calls(mockinabit.OpRefresh); n != 0 {
		t.Fatalf("%d refreshes sent within the Retry-After of a 429", n)
	}
	clock.advance(31 * time.Second)
	tickAll(t, envs)
	if rotated, _ := herdOutcome(t, envs, mock); rotated != len(envs) {
		t.Fatalf("%d of %d rotated once the Retry-After was over", rotated, len(envs))
	}
}

// Vault ticks the mounts together: the pace lets each tick start only what fits in slotWait, and
// leaves the rest, untouched, to the next tick.
func TestATickStartsOnlyTheRotationsItsPaceAllows(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, 50, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	usePacer(t, clock, false)
	toThreeAM(clock)
	tickAll(t, envs)
	fits := int(slotWait/rotation.PaceSpacing) + 1
	if n := mock.Calls(mockinabit.OpRefresh); n != fits {
		t.Fatalf("first tick: %d refreshes, want the %d that fit in %s at one per %s", n, fits, slotWait, rotation.PaceSpacing)
	}
	clock.advance(time.Minute)
	tickAll(t, envs)
	if rotated, lost := herdOutcome(t, envs, mock); rotated != len(envs) || lost != 0 {
		t.Fatalf("after the second tick: %d of %d rotated, %d lost", rotated, len(envs), lost)
	}
}

// A hold from inabit's rate limit never keeps a token from rotating at its expiry deadline.
func TestARateLimitHoldNeverDelaysTheExpiryDeadline(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_period": "719h"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	clock.advance(29*24*time.Hour + 16*time.Minute)
	if _, reason := storedConfig(t, envs[0]).plannedRotation(clock.now()); reason != rotation.ReasonExpiry {
		t.Fatalf("setup: the rotation is due for %q, not the expiry deadline", reason)
	}
	p.RateLimited(clock.mono(), rotation.MaxRateLimitHold)
	tickAll(t, envs)
	for i, env := range envs {
		if cfg := storedConfig(t, env); cfg.LastRotatedAt.IsZero() || cfg.LoginTokenLost {
			t.Fatalf("mount %d not rotated at its expiry deadline under a rate-limit hold", i)
		}
	}
}

// A rotation booked before a 429 arrived (waiting out its place in the pace) looks again when its
// wait is over, and leaves the refresh to a later tick instead of sending it into the limit.
func TestARotationWaitingItsTurnWhenA429ArrivesDoesNotGo(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	usePacer(t, clock, true)
	waits := 0
	pacerSleep = func(ctx context.Context, d time.Duration) error {
		waits++
		noteRateLimited(envs[0].srv.URL, 30*time.Second) // another mount's call met a 429 meanwhile
		clock.advance(d)
		return nil
	}
	toThreeAM(clock)
	tickInTurn(t, envs[:2])
	if waits != 1 {
		t.Fatalf("setup: the second mount waited %d times for its turn, want once", waits)
	}
	if refreshed := mock.Calls(mockinabit.OpRefresh); refreshed != 1 {
		t.Fatalf("%d refreshes sent, want only the first mount's: the second was booked before the 429", refreshed)
	}
}
