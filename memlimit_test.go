package inabit

import (
	"context"
	"math"
	"runtime/debug"
	"testing"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// The soft memory limit grows and shrinks with the live mounts once the plugin's main asked for
// it (issue 19): a fixed limit below the live heap of many mounts keeps the collector running.
func TestMemoryLimitFollowsTheMounts(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		ScaleMemoryLimit(0, 0)
		debug.SetMemoryLimit(before)
	})
	const base, perMount = 300 << 20, 1 << 20
	ScaleMemoryLimit(base, perMount)
	start := debug.SetMemoryLimit(-1)
	if want := base + perMount*liveMounts.Load(); start != want {
		t.Fatalf("limit %d with %d live mounts, want %d", start, liveMounts.Load(), want)
	}
	a := newTestEnv(t, mockinabit.Options{})
	newTestEnv(t, mockinabit.Options{})
	if got := debug.SetMemoryLimit(-1); got != start+2*perMount {
		t.Fatalf("two more mounts: limit %d, want %d", got, start+2*perMount)
	}
	a.b.Cleanup(context.Background())
	a.b.Cleanup(context.Background()) // cleaning up twice uncounts once
	if got := debug.SetMemoryLimit(-1); got != start+perMount {
		t.Fatalf("one mount cleaned up: limit %d, want %d", got, start+perMount)
	}
	// Off: mounts come and go, the limit stays where it is.
	ScaleMemoryLimit(0, 0)
	debug.SetMemoryLimit(math.MaxInt64)
	newTestEnv(t, mockinabit.Options{})
	if got := debug.SetMemoryLimit(-1); got != math.MaxInt64 {
		t.Fatalf("scaling off, yet a mount set the limit to %d", got)
	}
}
