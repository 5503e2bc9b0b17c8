package inabit

import (
	"context"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// An idle mount's tick. Most ticks of most mounts find nothing to do, and with hundreds of mounts
// their cost is the plugin's idle cost: the full path reads the config and lists the WAL prefix
// to settle unfinished rotations. When this node knows there is no WAL entry (it listed the
// prefix empty within walRelistAfter, wrote none and heard of no storage change since), a tick
// that finds nothing due and nothing doubted has nothing to settle either: one storage read.
//
// The sighting is this node's: a fresh backend (after a restart, a reload or a step-up) has none
// and lists on its first tick; a WAL entry another node wrote reaches it as an invalidation on
// a standby, and at the latest walRelistAfter later. Anything due, a read's rejection to confirm,
// a token held unsaved or a status asking for a probe takes the full path, which lists first.

// walRelistAfter bounds how long an idle tick trusts an empty listing of the WAL prefix.
const walRelistAfter = 10 * time.Minute

// idleTickLocked says whether this tick is idle and done (see above); false: take the full path.
// Callers hold b.mu.
func (b *backend) idleTickLocked(ctx context.Context, s logical.Storage) bool {
	if !b.login.knowsNoWALs(b.mono(), walRelistAfter) {
		return false
	}
	if _, _, held := b.login.held(); held {
		return false
	}
	cfg, err := readConfig(ctx, s)
	if err != nil || cfg == nil || cfg.LoginTokenLost || cfg.ProbeBeforeRefresh {
		return false // the full path reports these, or probes
	}
	if _, rejected := b.login.rejection(cfg.LoginToken); rejected {
		return false
	}
	next, _ := cfg.plannedRotation(b.now())
	return next.IsZero() || b.now().Before(next)
}
