package inabit

// What the tick's waiting for its turn without the mount lock, and the per-url pacers, must never
// break. Each test failed before its fix (found by a second adversarial review).

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// A tick that finds its mount's lock held by an operator's request (which may run for minutes
// against a slow url) queues without one of the process's four refresh slots: four such mounts
// (one tenant pointing at its own slow endpoint is enough) must not starve every other mount.
func TestATickQueuedBehindItsMountLockHoldsNoRefreshSlot(t *testing.T) {
	old := slotWait
	slotWait = 2 * time.Second
	t.Cleanup(func() { slotWait = old })
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	toThreeAM(clock)
	p.Reserve(clock.mono(), slotWait) // another mount's rotation starts now: each tick below waits its turn

	var (
		mu  sync.Mutex
		cur *backend
	)
	pacerSleep = func(ctx context.Context, d time.Duration) error {
		mu.Lock()
		b := cur
		cur = nil
		mu.Unlock()
		if b != nil {
			b.mu.Lock() // meanwhile an operator's rotate-root (or config write) on that mount starts, and runs long
		}
		return ctx.Err()
	}
	var wg sync.WaitGroup
	locked := envs[:maxRefreshesInFlight]
	for _, env := range locked {
		mu.Lock()
		cur = env.b
		mu.Unlock()
		wg.Add(1)
		go func() { defer wg.Done(); env.tick(t) }()
		waitFor(t, "the tick to wait for its turn", func() bool { mu.Lock(); defer mu.Unlock(); return cur == nil })
	}
	time.Sleep(200 * time.Millisecond) // each tick now queues on its mount lock
	held := len(refreshSlots)
	defer func() {
		for _, env := range locked {
			env.b.mu.Unlock() // the operators' requests end
		}
		wg.Wait()
	}()

	other := envs[maxRefreshesInFlight]
	clock.advance(10 * time.Second) // the pace is free again
	start := time.Now()
	other.tick(t)
	if storedConfig(t, other).LastRotatedAt.IsZero() {
		t.Fatalf("%d ticks queued on their own mount's lock (behind an operator's request) hold %d of the %d refresh slots; "+
			"another mount's due rotation found none in %s and was left to the next tick",
			len(locked), held, maxRefreshesInFlight, time.Since(start).Round(100*time.Millisecond))
	}
}

// Whoever may write one mount's config can name a thousand urls in a second (verification calls
// each, and the tenant's endpoint may answer 429); that never makes the process forget inabit's
// own 429 hold for every other mount.
func TestAConfigWriterCannotWipeInabitsRateLimitHold(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	toThreeAM(clock)
	p.RateLimited(clock.mono(), rotation.MaxRateLimitHold) // inabit said 429, Retry-After: 600

	tenant := newTestEnv(t, mockinabit.Options{})
	tenant.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "600"})
	start := time.Now()
	for i := 0; i < maxPacers; i++ {
		url := fmt.Sprintf("%s/graphql?n=%d", tenant.srv.URL, i)
		if _, err := tenant.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": tenant.mock.LoginToken(), "url": url}); err == nil {
			t.Fatalf("setup: config write %d was not refused", i)
		}
	}
	t.Logf("%d refused config writes took %s", maxPacers, time.Since(start).Round(time.Millisecond))
	tickAll(t, envs)
	if n := mock.Calls(mockinabit.OpRefresh); n != 0 {
		t.Fatalf("%d refreshes sent into inabit's 10-minute 429 hold, after one tenant's %d config writes reset the pacers", n, maxPacers)
	}
}

// An expiry-deadline herd under a rate limit (ten urgent starts a tick for half an hour, the
// spacing at its one-minute cap) never books the url's pace hours ahead: half an hour after
// inabit's last 429, scheduled rotations to that url go again.
func TestAnUrgentHerdDoesNotLockScheduledRotationsOutForHours(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	for clock.now().UTC().Hour() != 2 || clock.now().UTC().Minute() != 0 {
		clock.advance(time.Minute)
	}
	for tick := 0; tick < 30; tick++ { // 02:00-02:30: other mounts' rotations at their deadline, and 429s
		for i := 0; i < 10; i++ {
			p.ReserveUrgent(clock.mono(), slotWait)
		}
		p.RateLimited(clock.mono(), 0)
		clock.advance(time.Minute)
	}
	toThreeAM(clock) // half an hour without a 429
	ticks := 0
	for ; ticks < 5; ticks++ {
		if rotated, _ := herdOutcome(t, envs, mock); rotated == len(envs) {
			break
		}
		tickAll(t, envs)
		clock.advance(time.Minute)
	}
	if rotated, _ := herdOutcome(t, envs, mock); rotated != len(envs) {
		t.Fatalf("half an hour after inabit's last 429, %d ticks rotated %d of %d scheduled mounts (spacing %s): the pace is still booked hours ahead",
			ticks, rotated, len(envs), p.Spacing())
	}
}

// Clean (unmount, seal, step-down, reload) does not wait for a tick waiting its turn, which holds
// no lock; the tick then looks again and sends nothing from the stopped backend.
func TestATickWaitingItsTurnSendsNothingOnceTheBackendIsStopped(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	toThreeAM(clock)
	release := parkTickInItsTurn(t, envs[0], usePacer(t, clock, false).get(envs[0].srv.URL), clock)
	cleaned := make(chan struct{})
	go func() { defer close(cleaned); envs[0].b.Cleanup(context.Background()) }()
	select {
	case <-cleaned:
	case <-time.After(45 * time.Second):
		t.Fatal("Clean did not return")
	}
	release()
	if n := mock.Calls(mockinabit.OpRefresh); n != 0 {
		t.Fatalf("a tick that was waiting for its turn when Vault stopped the backend (Clean) then sent %d refresh(es) from the stopped backend", n)
	}
}

// One endpoint, one pacer: another path, a query string, other letter case or the default port
// written out, on the same scheme, host and port, shares its pace and its holds.
func TestSpellingsOfOneEndpointShareItsPacer(t *testing.T) {
	ps := newPacerSet()
	p := ps.get("https://api.inabit.com/graphql")
	for _, u := range []string{"https://API.inabit.com/graphql", "https://api.inabit.com/graphql?n=1", "HTTPS://api.inabit.com/other", "https://api.inabit.com:443/graphql"} {
		if ps.get(u) != p {
			t.Errorf("%s has a pacer of its own", u)
		}
	}
	if ps.get("https://api.inabit.com:8443/graphql") == p || ps.get("http://api.inabit.com/graphql") == p {
		t.Error("another port or scheme shares the pacer")
	}
}

// A full set makes room only by forgetting an idle pacer; full of held ones, it remembers nothing
// new and forgets nothing it holds.
func TestAFullPacerSetForgetsOnlyIdlePacers(t *testing.T) {
	clock := newTestClock()
	ps := newPacerSet()
	old := pacerClock
	pacerClock = clock.mono
	t.Cleanup(func() { pacerClock = old })
	held := map[string]*rotation.Pacer{}
	for i := 0; i < maxPacers; i++ {
		u := fmt.Sprintf("https://host-%d.example", i)
		p := ps.get(u)
		p.RateLimited(clock.mono(), rotation.MaxRateLimitHold)
		held[u] = p
	}
	if p := ps.get("https://one-more.example"); p != nil {
		t.Fatal("a full set of held pacers made room for another endpoint")
	}
	for u, p := range held {
		if ps.get(u) != p {
			t.Fatalf("%s's held pacer was forgotten", u)
		}
	}
	clock.advance(rotation.MaxRateLimitHold + time.Second) // every hold is over: all idle
	if p := ps.get("https://one-more.example"); p == nil {
		t.Fatal("a full set of idle pacers made no room")
	}
	if len(ps.by) != maxPacers {
		t.Fatalf("%d pacers, want %d", len(ps.by), maxPacers)
	}
}
