package inabit

import (
	"context"
	"net/http"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	pathStaticTokenPattern = "static-token"

	fieldTTL               = "ttl"
	fieldLastVaultRotation = "last_vault_rotation"
)

func pathStaticToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      pathStaticTokenPattern,
		DisplayAttrs: attrsStaticToken,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathStaticTokenRead,
				DisplayAttrs: attrsVerbRead,
				Responses:    staticTokenResponses,
			},
		},
		HelpSynopsis:    "Get the shared inabit access token without a lease, with ttl and rotation_period.",
		HelpDescription: pathStaticTokenHelp,
	}
}

const pathStaticTokenHelp = `
Returns the same shared, cached inabit access token as "token" (access_token, token_type
"Bearer", expires_at) with no lease, the way Vault's database static-creds do. The data also
carries ttl, the whole seconds (rounded up) after which this path hands out a different token,
rotation_period, the access token's lifetime in seconds, and last_vault_rotation, when the token
was fetched (RFC 3339, UTC). Read again after ttl seconds to get a fresh token with at least
access_token_min_ttl left; Vault Agent and consul-template (at ttl + 1) and the Vault Secrets
Operator with allowStaticCreds (at ttl + 0.5) do that on their own. rotate-root and config writes
replace the token sooner. Errors and warnings are the same as "token"'s.

Which path to use: people, Vault Agent and applications that read now and then can use either.
Applications that read at a high rate, or on every request, should read static-token: every read
of "token" makes Vault store a lease and revoke it later, which costs Vault throughput and
memory (at 100 reads a second, some 84 000 live leases).
`

// Shared by every mount, as configFields is.
var (
	attrsStaticToken     = &framework.DisplayAttributes{OperationPrefix: "inabit", OperationSuffix: "static-access-token"}
	staticTokenResponses = map[int][]framework.Response{
		http.StatusOK: {{Description: "OK", Fields: staticTokenResponseFields}},
	}
)

var staticTokenResponseFields = map[string]*framework.FieldSchema{
	fieldAccessToken:       {Type: framework.TypeString, Description: "inabit access token (JWT) for the Authorization: Bearer header."},
	fieldTokenType:         {Type: framework.TypeString, Description: `Always "Bearer".`},
	fieldExpiresAt:         {Type: framework.TypeString, Description: "When the access token expires (RFC 3339, UTC)."},
	fieldTTL:               {Type: framework.TypeInt64, Description: "Whole seconds, rounded up, after which this path returns a different token; read again after ttl seconds."},
	fieldRotationPeriod:    {Type: framework.TypeInt64, Description: "The access token's lifetime in seconds."},
	fieldLastVaultRotation: {Type: framework.TypeString, Description: "When the access token was fetched (RFC 3339, UTC)."},
}

// pathStaticTokenRead shares everything with pathTokenRead but the answer: a plain response, so
// Vault registers no lease, stores nothing and has nothing to revoke.
func (b *backend) pathStaticTokenRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, at, errResp, err := b.sharedAccessToken(ctx, req)
	if errResp != nil || err != nil {
		return errResp, err
	}
	now := b.now()
	// int64, not Duration or string: consul-template asserts json.Number and parses an integer.
	resp := &logical.Response{Data: map[string]interface{}{
		fieldAccessToken:    at.token,
		fieldTokenType:      "Bearer",
		fieldExpiresAt:      formatTime(at.expiresAt()),
		fieldTTL:            int64(at.staticTTL(b.mono(), now, cfg.AccessTokenMinTTL) / time.Second),
		fieldRotationPeriod: int64(at.lifetime() / time.Second),
		// When this token was fetched: the Vault Secrets Operator treats the data as static
		// creds (and re-syncs it after ttl) only if it has a non-zero last_vault_rotation.
		fieldLastVaultRotation: formatTime(at.fetchedAt),
	}}
	b.addLoginTokenWarnings(resp, cfg, now)
	return resp, nil
}

// staticTTL is how long static-token keeps returning this token: a reader that comes back later
// than ttl from now gets a different one. The cache hands a token out while at least minTTL of it
// is left, so until expiresAt - minTTL: ttl is the time until then rounded up to the second. Vault
// Agent comes back at ttl + 1 s and the Vault Secrets Operator at ttl + 0.5 s (plus up to 150 ms
// of jitter); both are past that point and get a fresh token, which has at least minTTL to live,
// while the one they hold still has minTTL less at most 2 s. Rounded down, a fetch that took
// 10 ms would make ttl 0.99 s short, and VSO would come back just before the switch and get the
// old token again.
//
// A token whose whole life is no longer than minTTL is never served from the cache (short-lived
// tokens, or access_token_min_ttl set to the lifetime to mint per read): every read returns a
// different one, and "come back in a second" would mint a token per reader per second. Such a
// token gets half its remaining life instead, rounded down, so the reader still re-reads well
// before it expires. The choice depends on the lifetime, not on what is left, so it does not flip
// with the milliseconds the fetch took. At least 1 s, like leaseTTL.
func (a *accessToken) staticTTL(mono time.Duration, now time.Time, minTTL time.Duration) time.Duration {
	var ttl time.Duration
	if a.life > minTTL {
		served := a.remaining(mono, now) - minTTL
		if ttl = served.Truncate(time.Second); ttl < served {
			ttl += time.Second
		}
	} else {
		ttl = (a.remaining(mono, now) / 2).Truncate(time.Second)
	}
	return max(ttl, time.Second)
}

// lifetime is the token's whole life, rounded to the second, never below 1 s.
func (a *accessToken) lifetime() time.Duration {
	return max(a.life.Round(time.Second), time.Second)
}
