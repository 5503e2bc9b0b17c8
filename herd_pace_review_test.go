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

// F1. The expiry deadline bypasses the pace only when Plan names it as the reason; a period
// rotation that came due before the deadline keeps reason "rotation_period" after the deadline
// has passed, so a 429 hold (or the pace) goes on holding it right up to the token's expiry.
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

// F1, end to end: inabit keeps answering some call of this Vault with 429 (Retry-After: 600),
// as a busy inabit does; the token's period rotation is held tick after tick, past its expiry
// deadline, until the token expires.
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

// F2. A 429 from a different inabit endpoint (a mount whose url is some other server, e.g. one
// tenant's own misbehaving or hostile endpoint) holds every other mount's scheduled rotation.
func TestA429FromAnotherEndpointDoesNotHoldThisHerd(t *testing.T) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	usePacer(t, clock, false)
	noisy := newTestEnv(t, mockinabit.Options{Now: clock.now})
	noisy.clock = clock
	noisy.b.now, noisy.b.mono, noisy.b.sleep = clock.now, clock.mono, clock.sleep
	noisy.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": noisy.mock.LoginToken(), "url": noisy.srv.URL})
	noisy.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "600"})
	for clock.now().UTC().Hour() != 3 || clock.now().UTC().Minute() != 0 {
		clock.advance(time.Minute)
	}
	for i := 0; i < 5; i++ {
		noisy.request(logical.ReadOperation, "token", nil) // the other endpoint's 429
		tickAll(t, envs)
		clock.advance(time.Minute)
	}
	if rotated, _ := herdOutcome(t, envs, mock); rotated != len(envs) {
		t.Fatalf("%d of %d mounts rotated in 5 ticks: a 429 from %s held mounts of %s", rotated, len(envs), noisy.srv.URL, envs[0].srv.URL)
	}
}

// F1 + F2: one mount whose url answers 429 to everything (a tenant's own endpoint, hostile or
// broken) and which its owner reads every ten minutes keeps every other mount's period rotation
// held until that mount's token expires and is declared LOST.
func TestOneMisbehavingEndpointCannotKillOtherMountsTokens(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_period": "672h"})
	usePacer(t, clock, false)
	noisy := newTestEnv(t, mockinabit.Options{Now: clock.now})
	noisy.clock = clock
	noisy.b.now, noisy.b.mono, noisy.b.sleep = clock.now, clock.mono, clock.sleep
	noisy.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": noisy.mock.LoginToken(), "url": noisy.srv.URL})
	noisy.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "3600"})
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

// F3. The spacing doubles for every 429 reported, and the client reports each attempt of a
// retried call: a few reads that met a brief 429 burst (no Retry-After) put the spacing at its
// one-minute cap, and nothing but paced rotations brings it back: a day later the next herd
// starts one rotation a tick.
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
	for clock.now().UTC().Hour() != 3 || clock.now().UTC().Minute() != 0 {
		clock.advance(time.Minute)
	}
	mock.SetRateLimit(10)
	ticks := 0
	for ; ticks < 5; ticks++ {
		if rotated, _ := herdOutcome(t, envs, mock); rotated == len(envs) {
			break
		}
		start := clock.mono()
		tickInTurn(t, envs)
		clock.advance(time.Minute - (clock.mono() - start))
	}
	if rotated, _ := herdOutcome(t, envs, mock); rotated != len(envs) {
		t.Fatalf("a day after a 3-read 429 burst, %d ticks rotated %d of %d mounts (spacing now %s); the same herd without it takes 3 ticks",
			ticks, rotated, len(envs), p.Spacing())
	}
}

// F4. Rotations at the expiry deadline skip the pace (and the slots), so a herd whose deadlines
// fall in the same few minutes (tokens issued together, rotation_period past the deadline, as in
// TestARateLimitHoldNeverDelaysTheExpiryDeadline) sends each tick's share in one second: here
// 50 one-hour tokens, spread over 5 minutes, about 10 rotations (20-30 calls) per tick.
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
		start := clock.mono()
		tickInTurn(t, envs)
		clock.advance(time.Minute - (clock.mono() - start))
	}
	refused := mock.Limited(mockinabit.OpRefresh) + mock.Limited(mockinabit.OpAccessToken)
	busiest := 0
	for _, n := range mock.CallsPerSecond(mockinabit.OpRefresh) {
		busiest = max(busiest, n)
	}
	rotated, lost := herdOutcome(t, envs, mock)
	t.Logf("%d calls refused (429), busiest second %d refreshes, %d of %d rotated, %d lost", refused, busiest, rotated, len(envs), lost)
	if refused > 0 || busiest > 2 {
		t.Fatalf("a herd at its expiry deadline: %d calls refused (429), busiest second %d refreshes (the pace allows 2)", refused, busiest)
	}
}

// F5. A periodic tick waits for its place in the pace (up to slotWait, then up to another
// slotWait/4 for a slot) holding the mount's lock, so an operator's rotate-root (or config write)
// on that mount waits behind it: "rotate-root is never held back" holds only for the pace itself.
func TestRotateRootIsNotHeldBehindATicksPaceWait(t *testing.T) {
	envs, _, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	for clock.now().UTC().Hour() != 3 || clock.now().UTC().Minute() != 0 {
		clock.advance(time.Minute)
	}
	p.Reserve(clock.mono(), slotWait) // another mount's rotation starts now: this tick waits its turn
	pacing := make(chan struct{})
	release := make(chan struct{})
	pacerSleep = func(ctx context.Context, d time.Duration) error {
		close(pacing)
		<-release // the pace's wait lasts until rotate-root is over (or the test gives up)
		return nil
	}
	done := make(chan struct{})
	go func() { defer close(done); envs[0].tick(t) }()
	select {
	case <-pacing:
	case <-time.After(30 * time.Second):
		t.Fatal("setup: the tick never waited for its turn")
	}
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
		close(release)
		<-done
		t.Fatal("rotate-root did not finish while a periodic tick waited for its pace: it waits for the mount lock the tick holds")
	}
	close(release)
	<-done
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
	for clock.now().UTC().Hour() != 3 || clock.now().UTC().Minute() != 0 {
		clock.advance(time.Minute)
	}
	tickAll(t, envs)
	if rotated, lost := herdOutcome(t, envs, mock); rotated != len(envs) || lost != 0 {
		t.Fatalf("%d of %d rotated, %d lost", rotated, len(envs), lost)
	}
}
