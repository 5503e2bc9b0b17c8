package inabit

import (
	"context"
	"errors"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

const pathRotateRootPattern = "rotate-root"

// Shared by every mount, as configFields is.
var (
	attrsRotateRoot = &framework.DisplayAttributes{OperationPrefix: "inabit", OperationVerb: "rotate", OperationSuffix: "login-token"}
	// An empty, non-nil schema makes ValidateStrict reject every field.
	noFields = map[string]*framework.FieldSchema{}
)

func pathRotateRoot(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      pathRotateRootPattern,
		DisplayAttrs: attrsRotateRoot,
		Fields:       noFields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.UpdateOperation: &framework.PathOperation{
				Callback: b.pathRotateRootWrite,
				// Only the active node of the primary may mint a token: a standby's write would
				// fail after inabit had already killed the old token.
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		HelpSynopsis:    "Rotate the inabit login token now.",
		HelpDescription: pathRotateRootHelp,
	}
}

const pathRotateRootHelp = `
Trades the stored login token for a new one at inabit (which kills the old one), saves it,
and drops the cached access token so every later read gets a fresh one. Returns
login_token_expires_at and last_rotated_at, never the token. Use it on a schedule of your
own when automated rotation is disabled, or as incident response when an access token leaked.
`

func (b *backend) pathRotateRootWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.noteMount(req)
	if err := d.ValidateStrict(); err != nil {
		return logical.ErrorResponse("invalid request: %s; rotate-root takes no fields", err), nil
	}
	cfg, err := b.rotate(ctx, req.Storage, triggerManual)
	if errors.Is(err, errNoConfig) {
		return b.notConfigured(), nil
	}
	var oerr *outcomeError
	if !errors.As(err, &oerr) {
		if err != nil {
			return nil, err
		}
		return rotateResponse(cfg), nil
	}
	switch status := oerr.outcome.HTTPStatus(); {
	case status == http.StatusOK && cfg != nil:
		// Rotated, but held in memory or not yet accepted by inabit: the warning says the rest.
		resp := rotateResponse(cfg)
		resp.AddWarning(oerr.Error())
		return resp, nil
	case oerr.outcome.Kind == rotation.Pending, oerr.outcome.Kind == rotation.Lost, oerr.outcome.Kind == rotation.Dropped:
		return nil, logical.CodedError(status, oerr.Error())
	default:
		return nil, logical.CodedError(status, "rotating the inabit login token failed: "+oerr.Error())
	}
}

func rotateResponse(cfg *inabitConfig) *logical.Response {
	return &logical.Response{Data: map[string]interface{}{
		fieldLoginTokenExpiresAt: formatTime(cfg.claims().ExpiresAt),
		fieldLastRotatedAt:       formatTime(cfg.LastRotatedAt),
	}}
}
