package inabit

import (
	"context"
	"sync"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// Pacing a herd (rotation.Pacer): Vault ticks every mount in the same second, so without a pace
// every rotation due in a minute would reach inabit within that second. One pacer per inabit
// endpoint (the config's url): one Vault is one client to it, so a 429 it answers holds every
// mount that uses it, and none that uses another (one tenant's misbehaving url must not hold
// everybody else's rotations).

// maxPacers bounds the endpoints remembered. Past it an idle pacer (no hold, no booking ahead)
// makes room, and when none is idle a 429 from yet another endpoint is not remembered: a config
// writer naming thousands of urls can neither grow the set nor make it forget inabit's hold.
const maxPacers = 1024

type pacerSet struct {
	mu sync.Mutex
	by map[string]*rotation.Pacer
}

func newPacerSet() *pacerSet { return &pacerSet{by: map[string]*rotation.Pacer{}} }

// get is url's pacer; nil only when the set is full of pacers still holding something. Pacers
// are keyed by origin (url.go: scheme, host, port): paths, queries and letter case do not make
// another client of the same server, nor escape its pace.
func (ps *pacerSet) get(url string) *rotation.Pacer {
	key := origin(url)
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p := ps.by[key]; p != nil {
		return p
	}
	if len(ps.by) >= maxPacers {
		now := pacerClock()
		for k, p := range ps.by {
			if p.Idle(now) {
				delete(ps.by, k)
				break
			}
		}
		if len(ps.by) >= maxPacers {
			return nil
		}
	}
	p := rotation.NewPacer()
	ps.by[key] = p
	return p
}

// The process's pacers, on the process's monotonic clock (variables so that tests can run them
// on theirs).
var (
	herdPacers   = newPacerSet()
	processStart = time.Now()
	pacerClock   = func() time.Duration { return time.Since(processStart) }
	pacerSleep   = sleepCtx
)

// noteRateLimited tells url's pacer of a 429 inabit answered there, to a scheduled rotation or a
// read: it holds every mount's scheduled rotations to that url.
func noteRateLimited(url string, retryAfter time.Duration) {
	if p := herdPacers.get(url); p != nil {
		p.RateLimited(pacerClock(), retryAfter)
	}
}

// awaitHerdTurn waits for cfg's rotation's turn: its start in the pace of cfg's url (a herd only),
// then a refresh slot, each slotWait at most. ok false: leave the rotation to the next tick.
// Callers hold no mount lock: rotate-root and config writes never queue behind this wait.
//
// Past the expiry deadline (whatever rule made the rotation due) nothing holds it back for long:
// it keeps the pace so that a herd at its deadline does not stampede either, but no 429 hold
// stops it, no booking is refused, and it goes without a slot if none is free.
func (b *backend) awaitHerdTurn(ctx context.Context, cfg *inabitConfig, reason string) (release func(), ok bool) {
	p := herdPacers.get(cfg.URL)
	herd := liveMounts.Load() >= rotation.SpreadMinMounts && p != nil // nil: see maxPacers
	if cfg.urgentRotation(reason, b.now()) {
		if herd {
			if wait := p.ReserveUrgent(pacerClock(), slotWait); wait > 0 {
				_ = pacerSleep(ctx, wait)
			}
		}
		release, _ = acquireRefreshSlot(ctx, 0)
		return release, true
	}
	waited := time.Duration(0)
	if herd {
		if waited, ok = paceScheduledRotation(ctx, p, slotWait); !ok {
			b.logger.Debug("rotation due, but the pace of rotations to this url (or inabit's rate limit) holds it; trying again next tick", "reason", reason)
			return func() {}, false
		}
	}
	if release, ok = acquireRefreshSlot(ctx, max(slotWait-waited, slotWait/4)); !ok {
		b.logger.Debug("rotation due, but other mounts' rotations fill the process's slots; trying again next tick", "reason", reason)
	}
	return release, ok
}

// paceScheduledRotation books a start in p's pace and waits for it, at most maxWait. ok false: no
// start within maxWait, or a 429 arrived meanwhile.
func paceScheduledRotation(ctx context.Context, p *rotation.Pacer, maxWait time.Duration) (waited time.Duration, ok bool) {
	wait, ok := p.Reserve(pacerClock(), maxWait)
	if !ok {
		return 0, false
	}
	if wait > 0 && pacerSleep(ctx, wait) != nil {
		return wait, false
	}
	return wait, !p.Held(pacerClock())
}
