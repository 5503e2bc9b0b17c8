// Command floorplugin is the benchmark's floor: an external secrets plugin whose read returns a
// constant token as a 15-minute lease. It pays exactly what every token plugin pays (the gRPC
// hop and the lease) and nothing else, so the inabit plugin's own cost is the difference.
// Its static-token path is the lease-free floor: the same constant data, plus the ttl and
// rotation_period integers inabit/static-token carries, as a plain response with no lease.
package main

import (
	"context"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/vault/api"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/hashicorp/vault/sdk/plugin"
)

func main() {
	meta := &api.PluginAPIClientMeta{}
	if err := meta.FlagSet().Parse(os.Args[1:]); err != nil {
		os.Exit(1)
	}
	if err := plugin.ServeMultiplex(&plugin.ServeOpts{
		BackendFactoryFunc: factory,
		TLSProviderFunc:    api.VaultPluginTLSProvider(meta.GetTLSConfig()),
	}); err != nil {
		os.Exit(1)
	}
}

// floorToken is as long as a real inabit access token, so that the lease Vault stores and the
// response it sends weigh the same as the plugin's.
var floorToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9." + strings.Repeat("eyJmbG9vciI6dHJ1ZX0", 8) + ".c2lnbmF0dXJlLW9mLWEtY29uc3RhbnQtZmxvb3ItdG9rZW4tMDAw"

func factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := &framework.Backend{BackendType: logical.TypeLogical}
	secret := &framework.Secret{
		Type: "floor_token",
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}
	b.Secrets = []*framework.Secret{secret}
	b.Paths = []*framework.Path{{
		Pattern: "static-token",
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				return &logical.Response{Data: map[string]interface{}{
					"access_token": floorToken, "token_type": "Bearer", "expires_at": "2100-01-01T00:00:00Z",
					"ttl": int64(300), "rotation_period": int64(900),
				}}, nil
			}},
		},
	}, {
		Pattern: "token",
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{Callback: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
				resp := secret.Response(map[string]interface{}{
					"access_token": floorToken, "token_type": "Bearer", "expires_at": "2100-01-01T00:00:00Z",
				}, nil)
				resp.Secret.TTL = 14 * time.Minute
				resp.Secret.MaxTTL = 14 * time.Minute
				return resp, nil
			}},
		},
	}}
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}
