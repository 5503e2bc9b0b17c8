package inabit

import (
	"context"
	"errors"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const pathRotateRootPattern = "rotate-root"

func pathRotateRoot(b *backend) *framework.Path {
	return &framework.Path{
		Pattern: pathRotateRootPattern,
		DisplayAttrs: &framework.DisplayAttributes{
			OperationPrefix: "inabit",
			OperationVerb:   "rotate",
			OperationSuffix: "login-token",
		},
		// An empty, non-nil schema makes ValidateStrict reject every field.
		Fields: map[string]*framework.FieldSchema{},
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
	if err := d.ValidateStrict(); err != nil {
		return logical.ErrorResponse("invalid request: %s; rotate-root takes no fields", err), nil
	}
	cfg, err := b.rotate(ctx, req.Storage, triggerManual)
	if errors.Is(err, errNoConfig) {
		return logical.ErrorResponse(errNoConfig.Error()), nil
	}
	var rerr *rotationError
	if errors.As(err, &rerr) && cfg != nil {
		// The token rotated but could not be saved: the call did its job, the warning says the rest.
		resp := rotateResponse(cfg)
		resp.AddWarning(rerr.Error())
		return resp, nil
	}
	if err != nil {
		if rerr != nil {
			return nil, logical.CodedError(http.StatusBadGateway, "rotating the inabit login token failed: "+rerr.Error())
		}
		return nil, err
	}
	return rotateResponse(cfg), nil
}

func rotateResponse(cfg *inabitConfig) *logical.Response {
	return &logical.Response{Data: map[string]interface{}{
		fieldLoginTokenExpiresAt: formatTime(cfg.claims().ExpiresAt),
		fieldLastRotatedAt:       formatTime(cfg.LastRotatedAt),
	}}
}
