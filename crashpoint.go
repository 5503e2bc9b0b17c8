//go:build inabit_crashpoints

package inabit

import (
	"os"
)

// crashPointEnv names a rotation step at which the plugin process exits at once, as if the node
// died there. It exists only so the end-to-end suite can crash a real plugin process between two
// of its own statements, which no outside signal can time; the test registers the plugin with
// it (`vault plugin register -env`). Only a build with the inabit_crashpoints tag, which the e2e
// suite alone uses, has this file; release builds get crashpoint_off.go and ignore the variable.
const crashPointEnv = "INABIT_PLUGIN_TEST_CRASH_AT"

const (
	crashBeforeWAL    = "before-wal"
	crashAfterWAL     = "after-wal"
	crashAfterRefresh = "after-refresh" // inabit answered; the new token is not saved yet
	crashAfterPersist = "after-persist" // the new token is saved; the WAL entry is not deleted yet
)

var crashAt = os.Getenv(crashPointEnv)

func (b *backend) crashPoint(name string) {
	if crashAt == name {
		b.logger.Error("test crash point reached: exiting", "point", name)
		os.Exit(3)
	}
}
