// Command vault-plugin-secrets-inabit serves the inabit secrets engine to Vault over gRPC.
package main

import (
	"os"
	"runtime/debug"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	inabit "github.com/inabit/vault-plugin-secrets-inabit"
)

// softMemoryLimit caps the Go runtime's memory (heap, stacks, runtime structures; not the
// binary's mapped code) unless the operator sets GOMEMLIMIT. A burst of a thousand concurrent reads
// then makes the collector work harder instead of growing the process. Ad-hoc runs on a real Vault
// (2 cores; 20000 token reads, then a 1000-read stampede on a mount with an empty cache), plugin
// CPU per read and peak RSS (make bench with 16 MiB: 38.2 MB, bench/RESULTS.md):
//
//	no limit    191-217 us at 8 clients, 132-146 us at 64   38.3-40.5 MB
//	20 MiB                                                  41.1 MB (make bench)
//	16 MiB      212-213 us at 8 clients, 118-120 us at 64   34.8-37.2 MB
//	12 MiB      334-337 us at 8 clients                     36.1-36.4 MB (binds under load)
//	GOGC=50     252 us at 8 clients                         38.1 MB
const softMemoryLimit = 16 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
	go exitWhenOrphaned(os.Getppid(), parentCheckInterval)
	apiClientMeta := &api.PluginAPIClientMeta{}
	flags := apiClientMeta.FlagSet()
	// Vault passes TLS flags to plugins; parsing them keeps the plugin compatible with every mode.
	if err := flags.Parse(os.Args[1:]); err != nil {
		fatal(err)
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: inabit.Factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(apiClientMeta.GetTLSConfig()),
	}); err != nil {
		fatal(err)
	}
}

// parentCheckInterval is how often the plugin checks that Vault, its parent, is still there: one
// getppid call, nothing to the cost of a mount.
const parentCheckInterval = 2 * time.Second

// exitWhenOrphaned ends the process once its parent is gone. Vault stops its plugins when it
// shuts down, but a Vault killed with SIGKILL (or by the OOM killer) cannot, and the plugin,
// reparented to init, would run on with nobody to serve: one more orphan per crash. A rotation
// in flight cannot save anything then either (storage is Vault's); its WAL entry, written before
// the refresh was sent, lets the next active node settle it.
func exitWhenOrphaned(parent int, every time.Duration) {
	if parent <= 1 {
		return // started by init or a supervisor itself: there is no Vault parent to watch
	}
	for range time.Tick(every) {
		if os.Getppid() != parent {
			hclog.New(&hclog.LoggerOptions{}).Error("Vault, this plugin's parent process, is gone; exiting", "parent_pid", parent)
			os.Exit(1)
		}
	}
}

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
