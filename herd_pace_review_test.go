package inabit

// The herd's pace and holds never cost a token its life, never let one endpoint hold another's
// mounts, never outlast the 429s that caused them, and never keep rotate-root waiting. (Found by
// an adversarial review of the pace; each failed before its fix.)

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// A rotation due by rotation_period before the expiry deadline keeps that reason after the
// deadline has passed; no 429 hold may hold it then (whatever rule made it due, the deadline is
// the deadline).
func TestAPeriodRotationPastItsExpiryDeadlineIsNotHeld(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_period": "672h"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	clock.advance(29*24*time.Hour + time.Hour) // past every mount's expiry deadline (30 d token, 1 d margin)
	cfg := storedConfig(t, envs[0])
	deadline := rotation.ExpiryDeadline(cfg.token(cfg.claims()), cfg.Settings.Budget())
	_, reason := cfg.plannedRotation(clock.now())
	t.Logf("now is %s past the expiry deadline; planned reason %q", clock.now().Sub(deadline).Round(time.Minute), reason)
	p.RateLimited(clock.mono(), rotation.MaxRateLimitHold)
	tickAll(t, envs)
	for i, env := range envs {
		if cfg := storedConfig(t, env); cfg.LastRotatedAt.IsZero() {
			t.Fatalf("mount %d: past its expiry deadline (reason %q) and still held by a 429 hold", i, reason)
		}
	}
}

// End to end: inabit answers some call of this Vault with 429 (Retry-After: 600) every ten minutes,
// as a busy inabit does; the token still rotates before it expires.
func TestRenewed429HoldsNeverLetATokenExpire(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_period": "672h"})
	usePacer(t, clock, false)
	exp := storedConfig(t, envs[0]).claims().ExpiresAt
	clock.advance(28*24*time.Hour + 20*time.Minute) // period due (plus its spread)
	ticks := 0
	for clock.now().Before(exp.Add(time.Minute)) {
		ticks++
		noteRateLimited(envs[0].srv.URL, 10*time.Minute) // somebody's read met a 429
		envs[0].tick(t)
		if !storedConfig(t, envs[0]).LastRotatedAt.IsZero() {
			return
		}
		clock.advance(time.Minute)
	}
	clock.advance(rotation.MaxRateLimitHold + time.Minute)
	envs[0].tick(t) // the hold is over
	cfg := storedConfig(t, envs[0])
	t.Fatalf("%d ticks held: token expired at %s unrotated under 429 holds; after the hold: lost=%v, last error %q",
		ticks, exp, cfg.LoginTokenLost, cfg.LastRotationError)
}

// rateLimitedEndpoint is one more mount, on clock, whose own endpoint answers every access-token
// call with 429 and Retry-After retryAfter (seconds): a tenant's misbehaving or hostile url.
func rateLimitedEndpoint(t *testing.T, clock *testClock, retryAfter string) *testEnv {
	t.Helper()
	env := newTestEnv(t, mockinabit.Options{Now: clock.now})
	env.clock = clock
	env.b.now, env.b.mono, env.b.sleep = clock.now, clock.mono, clock.sleep
	env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken(), "url": env.srv.URL})
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: retryAfter})
	return env
}

// A 429 from another endpoint (a mount whose url is some other server: one tenant's misbehaving
// or hostile endpoint) holds no rotation of mounts on inabit's.
func TestA429FromAnotherEndpointDoesNotHoldThisHerd(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	usePacer(t, clock, false)
	noisy := rateLimitedEndpoint(t, clock, "600")
	toThreeAM(clock)
	for i := 0; i < 5; i++ {
		noisy.request(logical.ReadOperation, "token", nil) // the other endpoint's 429
		tickAll(t, envs)
		clock.advance(time.Minute)
	}
	if rotated, _ := herdOutcome(t, envs, mock); rotated != len(envs) {
		t.Fatalf("%d of %d mounts rotated in 5 ticks: a 429 from %s held mounts of %s", rotated, len(envs), noisy.srv.URL, envs[0].srv.URL)
	}
}

// One mount whose url answers 429 to everything, read by its owner every ten minutes, never keeps
// the other mounts' tokens from rotating before they expire.
func TestOneMisbehavingEndpointCannotKillOtherMountsTokens(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_period": "672h"})
	usePacer(t, clock, false)
	noisy := rateLimitedEndpoint(t, clock, "3600")
	exp := storedConfig(t, envs[0]).claims().ExpiresAt
	clock.advance(28*24*time.Hour + 20*time.Minute)
	for clock.now().Before(exp.Add(time.Minute)) {
		noisy.request(logical.ReadOperation, "token", nil)
		for i := 0; i < 10; i++ { // Vault ticks every minute
			tickAll(t, envs)
			clock.advance(time.Minute)
		}
	}
	dead := 0
	for i, env := range envs {
		cfg := storedConfig(t, env)
		if !env.mock.LoginTokenValid(cfg.LoginToken) {
			dead++
			t.Logf("mount %d: rotated at %s, lost %v, stored token dead at inabit", i, cfg.LastRotatedAt, cfg.LoginTokenLost)
		}
	}
	if dead > 0 {
		t.Fatalf("%d of %d mounts' login tokens expired unrotated, held past their expiry deadline by another endpoint's 429s", dead, len(envs))
	}
}

// A few reads that met a brief 429 burst (the client reports each attempt of a retried call) slow
// the pace once, and a day later the next herd runs at the usual pace.
func TestABriefBurstOf429sDoesNotSlowTomorrowsHerd(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, 50, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, true).get(envs[0].srv.URL)
	clock.advance(time.Hour) // the access tokens cached at config write have expired
	mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, Times: 9})
	for _, env := range envs[:3] { // three apps read; each read's client tries three times
		env.request(logical.ReadOperation, "token", nil)
	}
	t.Logf("after three reads met a 429: spacing %s", p.Spacing())
	clock.advance(24 * time.Hour)
	toThreeAM(clock)
	mock.SetRateLimit(10)
	ticks := tickUntilRotated(t, envs, mock, clock, 5)
	if rotated, _ := herdOutcome(t, envs, mock); rotated != len(envs) {
		t.Fatalf("a day after a 3-read 429 burst, %d ticks rotated %d of %d mounts (spacing now %s); the same herd without it takes 3 ticks",
			ticks, rotated, len(envs), p.Spacing())
	}
}

// A herd whose expiry deadlines fall in the same few minutes (50 one-hour tokens issued together,
// rotation_period past the deadline) keeps the pace too: nothing refused, two refreshes a second
// at most.
func TestAHerdAtItsExpiryDeadlineDoesNotStampedeInabit(t *testing.T) {
	clock := newTestClock()
	mock, srv := mockinabit.NewHTTPTest(mockinabit.Options{Now: clock.now, LoginTokenTTL: time.Hour})
	t.Cleanup(srv.Close)
	users := mock.CreateUsers(50)
	var envs []*testEnv
	for i := range users {
		env := newTestEnv(t, mockinabit.Options{Now: clock.now})
		env.clock, env.mock, env.srv = clock, mock, srv
		env.b.now, env.b.mono, env.b.sleep = clock.now, clock.mono, clock.sleep
		env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": users[i].LoginToken, "url": srv.URL, "rotation_period": "50m"})
		envs = append(envs, env)
	}
	usePacer(t, clock, true)
	if _, reason := storedConfig(t, envs[0]).plannedRotation(clock.now()); reason != rotation.ReasonExpiry {
		t.Fatalf("setup: due for %q, not the expiry deadline", reason)
	}
	mock.SetRateLimit(10)
	clock.advance(35 * time.Minute)
	for i := 0; i < 15; i++ {
		tickAMinute(t, envs, clock)
	}
	refused, busiest := refusedCalls(mock), busiestRefreshSecond(mock)
	rotated, lost := herdOutcome(t, envs, mock)
	t.Logf("%d calls refused (429), busiest second %d refreshes, %d of %d rotated, %d lost", refused, busiest, rotated, len(envs), lost)
	if refused > 0 || busiest > 2 {
		t.Fatalf("a herd at its expiry deadline: %d calls refused (429), busiest second %d refreshes (the pace allows 2)", refused, busiest)
	}
}

// parkTickInItsTurn starts env's periodic tick with p's pace booked ahead of it, and returns once
// the tick waits for its turn (without the mount lock); release ends that wait and waits for
// the tick to finish.
func parkTickInItsTurn(t *testing.T, env *testEnv, p *rotation.Pacer, clock *testClock) (release func()) {
	t.Helper()
	p.Reserve(clock.mono(), slotWait) // another mount's rotation starts now: this tick waits its turn
	pacing, over := make(chan struct{}), make(chan struct{})
	pacerSleep = func(ctx context.Context, d time.Duration) error {
		close(pacing)
		<-over
		return nil
	}
	done := make(chan struct{})
	go func() { defer close(done); env.tick(t) }()
	select {
	case <-pacing:
	case <-time.After(30 * time.Second):
		t.Fatal("setup: the tick never waited for its turn")
	}
	return func() { close(over); <-done }
}

// A tick waits for its place in the pace without the mount lock: an operator's rotate-root on that
// mount goes meanwhile, and the tick's second look then finds nothing due.
func TestRotateRootIsNotHeldBehindATicksPaceWait(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	toThreeAM(clock)
	release := parkTickInItsTurn(t, envs[0], usePacer(t, clock, false).get(envs[0].srv.URL), clock)
	rotated := make(chan error, 1)
	go func() {
		_, err := envs[0].request(logical.UpdateOperation, "rotate-root", nil)
		rotated <- err
	}()
	select {
	case err := <-rotated:
		if err != nil {
			t.Fatalf("rotate-root during a tick's wait: %v", err)
		}
	case <-time.After(30 * time.Second):
		release()
		t.Fatal("rotate-root did not finish while a periodic tick waited for its pace: it waits for the mount lock the tick holds")
	}
	release()
	// The tick looks again once its turn comes: the token it planned for is gone, and the one
	// rotate-root stored is not due.
	cfg := storedConfig(t, envs[0])
	if refreshes := envs[0].mock.Calls(mockinabit.OpRefresh); refreshes != 1 || cfg.LoginTokenLost || cfg.LastRotationError != "" || !envs[0].mock.LoginTokenValid(cfg.LoginToken) {
		t.Fatalf("after rotate-root during a tick's wait: %d refreshes (want 1), lost %v, error %q, stored token valid %v",
			refreshes, cfg.LoginTokenLost, cfg.LastRotationError, envs[0].mock.LoginTokenValid(cfg.LoginToken))
	}
}

// With fewer than SpreadMinMounts mounts, neither a 429 hold nor a slow pace changes when a
// scheduled rotation goes.
func TestAFewMountsIgnoreThePaceAndItsHolds(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts-1, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	for i := 0; i < 8; i++ {
		p.RateLimited(clock.mono()+time.Duration(i)*time.Hour, time.Hour)
	}
	p.Reserve(clock.mono(), time.Hour)
	toThreeAM(clock)
	tickAll(t, envs)
	if rotated, lost := herdOutcome(t, envs, mock); rotated != len(envs) || lost != 0 {
		t.Fatalf("%d of %d rotated, %d lost", rotated, len(envs), lost)
	}
}
