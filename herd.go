package inabit

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// Many mounts, one process. Vault runs every mount of this plugin in one process
// (ServeMultiplex), so a herd (hundreds of mounts due in the same minute) is seen here, and
// bounded here, in two ways:
//   - spread: with SpreadMinMounts mounts or more, each token's due rotation is put off by its own
//     offset (rotation.Spread), keyed by the token, so all nodes agree on it;
//   - slots: at most maxRefreshesInFlight scheduled rotations talk to inabit at once; a tick that
//     finds none free within slotWait tries again on the next tick, except at the expiry
//     deadline, where it goes ahead at once, slot or not: the token must not die waiting.

// maxRefreshesInFlight bounds the scheduled rotations (a probe and a refresh each) in flight per
// process. Four keep a 500-mount herd at a few calls a second to inabit and still drain it in
// minutes; rotate-root, an operator's request, is never held back.
const maxRefreshesInFlight = 4

// slotWait is how long a tick waits for a free slot before leaving the rotation to the next tick
// (a variable so that tests need not wait it out).
var slotWait = 20 * time.Second

var (
	liveMounts   atomic.Int64
	refreshSlots = make(chan struct{}, maxRefreshesInFlight)
)

// The process's pace of scheduled rotations, on the process's monotonic clock (variables so that
// tests can run it on theirs).
var (
	herdPacer    = rotation.NewPacer()
	processStart = time.Now()
	pacerClock   = func() time.Duration { return time.Since(processStart) }
	pacerSleep   = sleepCtx
)

// countMount counts b among the process's live mounts until uncountMount.
func (b *backend) countMount() {
	if b.counted.CompareAndSwap(false, true) {
		liveMounts.Add(1)
		applyMemoryLimit() // memlimit.go
	}
}

func (b *backend) uncountMount() {
	if b.counted.CompareAndSwap(true, false) {
		liveMounts.Add(-1)
		applyMemoryLimit()
	}
}

// herdSpread is how long cfg's due rotation is put off: see rotation.Spread. The key is the
// login token's hash: fixed for the token's life, the same on every node, different per mount.
func herdSpread(cfg *inabitConfig) time.Duration {
	mounts := int(liveMounts.Load())
	if mounts < rotation.SpreadMinMounts || cfg.LoginToken == "" {
		return 0
	}
	sum := sha256.Sum256([]byte(cfg.LoginToken))
	return rotation.Spread(cfg.Settings, binary.BigEndian.Uint64(sum[:8]), mounts)
}

// awaitHerdTurn waits, slotWait at most, for the process's pace (a herd only) and then for a
// refresh slot. ok false: leave the rotation to the next tick. A rotation at the expiry deadline
// is never held back: it goes at once, with a slot if one is free.
func (b *backend) awaitHerdTurn(ctx context.Context, reason string) (release func(), ok bool) {
	if reason == rotation.ReasonExpiry {
		release, _ = acquireRefreshSlot(ctx, 0)
		return release, true
	}
	waited, ok := paceScheduledRotation(ctx, slotWait)
	if !ok {
		b.logger.Debug("rotation due, but the process's pace of rotations (or inabit's rate limit) holds it; trying again next tick", "reason", reason)
		return func() {}, false
	}
	if release, ok = acquireRefreshSlot(ctx, max(slotWait-waited, slotWait/4)); !ok {
		b.logger.Debug("rotation due, but other mounts' rotations fill the process's slots; trying again next tick", "reason", reason)
	}
	return release, ok
}

// paceScheduledRotation books this rotation's start in the process's pace and waits for it, at
// most maxWait; with fewer than SpreadMinMounts mounts there is no herd and no wait. ok false: no
// start within maxWait, or a 429 arrived meanwhile.
func paceScheduledRotation(ctx context.Context, maxWait time.Duration) (waited time.Duration, ok bool) {
	if liveMounts.Load() < rotation.SpreadMinMounts {
		return 0, true
	}
	wait, ok := herdPacer.Reserve(pacerClock(), maxWait)
	if !ok {
		return 0, false
	}
	if wait > 0 && pacerSleep(ctx, wait) != nil {
		return wait, false
	}
	return wait, !herdPacer.Held(pacerClock())
}

// noteRateLimited tells the process's pacer of a 429 inabit answered any mount, for a scheduled
// rotation or a read: one Vault is one client to inabit, so its rate limit holds every mount's
// scheduled rotations.
func noteRateLimited(retryAfter time.Duration) { herdPacer.RateLimited(pacerClock(), retryAfter) }

// acquireRefreshSlot takes one of the process's refresh slots, waiting at most wait (or until ctx
// ends). ok false: none came free; release is then a no-op.
func acquireRefreshSlot(ctx context.Context, wait time.Duration) (release func(), ok bool) {
	select {
	case refreshSlots <- struct{}{}:
		return func() { <-refreshSlots }, true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case refreshSlots <- struct{}{}:
		return func() { <-refreshSlots }, true
	case <-t.C:
	case <-ctx.Done():
	}
	return func() {}, false
}
