//go:build !inabit_crashpoints

package inabit

// Names of the rotation steps the e2e build can stop at (crashpoint.go); in a release build they
// are labels and crashPoint does nothing, whatever the environment says.
const (
	crashBeforeWAL    = "before-wal"
	crashAfterWAL     = "after-wal"
	crashAfterRefresh = "after-refresh"
	crashAfterPersist = "after-persist"
)

func (b *backend) crashPoint(string) {}
