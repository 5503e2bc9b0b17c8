package inabit

import (
	"runtime/debug"
	"sync"
)

// The plugin binary gives itself a soft memory limit (cmd/vault-plugin-secrets-inabit), so that a
// burst of concurrent reads makes the collector work harder instead of growing the process. But
// every mount costs the process about 100 KB of live heap, 64 KB of it the read and write buffers
// of the gRPC connection to Vault that Vault's SDK opens for each mount (any plugin pays it; the
// bench's floor plugin does). A fixed 16 MiB is below the live heap from about 150 mounts on, and
// then the collector runs without pause: at 500 mounts on 2 cores the idle process spent 1.3 s of
// CPU a minute instead of 0.36 s, and reads ran at 0.3-0.5x the floor plugin's (issue 19). So the
// limit grows with the mounts: base, plus perMount for each live mount.

var memLimit struct {
	mu             sync.Mutex
	base, perMount int64
}

// ScaleMemoryLimit sets the process's soft memory limit (debug.SetMemoryLimit) to base plus
// perMount for each live mount, now and whenever a mount is added or removed. The plugin's main
// calls it unless the operator set GOMEMLIMIT; a base of 0 stops the scaling and leaves the limit
// as it is.
func ScaleMemoryLimit(base, perMount int64) {
	memLimit.mu.Lock()
	memLimit.base, memLimit.perMount = base, perMount
	memLimit.mu.Unlock()
	applyMemoryLimit()
}

// applyMemoryLimit sets the limit for the live mounts counted now. Calls are serialised and each
// reads the count when it runs, so the last one leaves the limit of the last count.
func applyMemoryLimit() {
	memLimit.mu.Lock()
	defer memLimit.mu.Unlock()
	if memLimit.base <= 0 {
		return
	}
	debug.SetMemoryLimit(memLimit.base + memLimit.perMount*max(liveMounts.Load(), 0))
}
