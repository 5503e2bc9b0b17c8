// Command vault-plugin-secrets-inabit serves the inabit secrets engine to Vault over gRPC.
package main

import (
	"os"
	"runtime/debug"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/plugin"

	inabit "github.com/inabit/vault-plugin-secrets-inabit"
)

// softMemoryLimit caps the Go runtime's memory (heap, stacks, runtime structures; not the
// binary's mapped code) unless the operator sets GOMEMLIMIT. The live heap is a few MB, so under
// steady load the limit is never reached and costs nothing; a burst of a thousand concurrent reads
// makes the collector work harder instead of growing the process. Measured on a real Vault (2
// cores, 20000 reads at 8 clients, then 3 bursts of 1000 concurrent reads): plugin CPU per read
// 175-180 us with the limit, 177-198 us without, floor plugin 175-186 us; peak RSS after the
// bursts 37.9-39.3 MB with it, 42.3-45.6 MB without. GOGC=50 instead cost 40 us per read and did
// not lower the burst's peak.
const softMemoryLimit = 20 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(softMemoryLimit)
	}
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

func fatal(err error) {
	hclog.New(&hclog.LoggerOptions{}).Error("plugin shutting down", "error", err)
	os.Exit(1)
}
