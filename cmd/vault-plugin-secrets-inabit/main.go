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

// gcPercent is the plugin's GOGC unless the operator sets GOGC. The live heap is a few MB (one
// config, one cached token), so the default 100 lets freed request garbage double it before a
// collection; 50 keeps the peak RSS of a 1000-read burst about 2 MB lower for a few more short
// collections a second (measured in bench/RESULTS.md).
const gcPercent = 50

func main() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(gcPercent)
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
