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
// bounded here, in three ways:
//   - spread: with SpreadMinMounts mounts or more, each token's due rotation is put off by its own
//     offset (rotation.Spread), keyed by the token, so all nodes agree on it;
//   - pace (herd_pace.go): with SpreadMinMounts mounts or more, scheduled rotations to one inabit
//     endpoint start PaceSpacing apart, and a 429 holds them;
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
