// Command vault-plugin-secrets-inabit serves the inabit secrets engine to Vault over gRPC.
package main

import (
	"os"
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
//
// That is for one mount. Each mount adds about 100 KB of live heap (64 KB of it the read and
// write buffers of the gRPC connection to Vault that Vault's SDK opens per mount) and some 130 KB
// to what the limit counts, and each minute's tick of 500 mounts allocates about 40 MB. So the
// limit grows by memoryPerMount for each live mount (inabit.ScaleMemoryLimit). The many-mounts
// stage of make bench, 500 mounts on 2 cores (plugin RSS, plugin CPU while idle, reads over the
// 500 mounts against the floor plugin's; load average 0.0-4.7 from other work on the machine):
//
//	16 MiB fixed               RSS  70 MB, 1255 ms/min, 0.32-0.53x (about 40 collections a tick)
//	16 MiB + 128 KiB a mount   RSS  88 MB, 1420 ms/min, 0.73-0.83x (still binding)
//	16 MiB + 256 KiB a mount   RSS 140 MB,  185 ms/min, 0.97-1.21x
//	no limit                   RSS 140 MB,  355 ms/min, 0.98-1.13x
const (
	softMemoryLimit = 16 << 20
	memoryPerMount  = 256 << 10
)

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		inabit.ScaleMemoryLimit(softMemoryLimit, memoryPerMount)
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
