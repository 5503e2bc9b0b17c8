package inabit

import (
	"context"
	"net/http"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

const (
	pathHealthPattern = "health"

	fieldState      = "state"
	fieldNeedsHuman = "needs_human"
	fieldReason     = "reason"

	stateUnconfigured = "unconfigured"
	stateUnsaved      = "unsaved"
	stateRejected     = "rejected_unconfirmed"
)

// pathHealth answers a monitor on any Vault edition: events need Enterprise, and LOST is
// permanent, so someone must hear of it. It reveals no token and no setting, so a monitoring
// policy can grant it alone.
func pathHealth(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      pathHealthPattern,
		DisplayAttrs: attrsHealth,
		Fields:       healthFields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathHealthRead,
				DisplayAttrs: attrsVerbRead,
				// Only the active node knows of a rotated token held in its memory, and of
				// rejections its reads have seen: a performance standby would answer from storage.
				ForwardPerformanceStandby: true,
				Responses: map[int][]framework.Response{
					http.StatusOK: {{Description: "OK", Fields: healthResponseFields}},
				},
			},
		},
		HelpSynopsis:    "Whether this mount needs a human, and why: for monitoring.",
		HelpDescription: pathHealthHelp,
	}
}

const pathHealthHelp = `
Answers in one field, needs_human, whether someone must act on this mount, and in reason what
to do. state is one of healthy, retrying (the last rotation failed; retries continue), pending
(a refresh's outcome is being settled), rejected_unconfirmed (a read saw inabit reject the
login token; the next tick looks again), expiring_unrotated (automated rotation is off and the
login token is near its expiry), expired, lost (LOGIN TOKEN LOST), unsaved (a rotated login
token is held in memory because storage refuses it) and unconfigured. needs_human is true for
lost, expired, expiring_unrotated, unsaved and unconfigured, and for retrying or pending once
rotation has failed 6 times in a row (about half an hour) or half the time between the token's
expiry deadline and its expiry has gone.
Never returns a token or a setting: grant monitoring read on this path alone.
`

// Shared by every mount, as configFields is; health takes no fields.
var (
	attrsHealth  = &framework.DisplayAttributes{OperationPrefix: "inabit", OperationSuffix: "health"}
	healthFields = map[string]*framework.FieldSchema{}
)

var healthResponseFields = map[string]*framework.FieldSchema{
	fieldState:               {Type: framework.TypeString, Description: "healthy, retrying, pending, rejected_unconfirmed, expiring_unrotated, expired, lost, unsaved or unconfigured."},
	fieldNeedsHuman:          {Type: framework.TypeBool, Description: "True when nothing automatic will fix the mount: someone must act (reason says how)."},
	fieldReason:              {Type: framework.TypeString, Description: "What is wrong and what to do; empty when healthy."},
	fieldLoginTokenExpiresAt: {Type: framework.TypeString, Description: "When the stored login token expires (RFC 3339)."},
	fieldNextRotationAt:      {Type: framework.TypeString, Description: "When the next rotation is attempted (RFC 3339); empty when none will be."},
	fieldRotationFailures:    {Type: framework.TypeInt, Description: "Rotation failures in a row."},
}

func (b *backend) pathHealthRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.noteMount(req)
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return &logical.Response{Data: map[string]interface{}{
			fieldState: stateUnconfigured, fieldNeedsHuman: true,
			fieldReason: "no login token: write the API user's login token to " + b.configPath(),
		}}, nil
	}
	now := b.now()
	claims := cfg.claims()
	h := rotation.HealthOf(cfg.Settings, cfg.Status, cfg.token(claims), now, b.mountOrDefault())
	state := string(h.State)
	if _, rejected := b.login.rejection(cfg.LoginToken); rejected && h.State == rotation.StateHealthy {
		// Stored status says healthy, but a read has just seen inabit reject the token: not
		// "usable" until the next tick's second look says which.
		state = stateRejected
		h.Reason = "inabit rejected the login token on a read; the next tick asks again and records LOGIN TOKEN LOST if it still does"
	}
	if _, _, unsaved := b.login.held(); unsaved {
		state, h.NeedsHuman = stateUnsaved, true
		h.Reason = "a rotated login token is held in this node's memory because storage refuses to save it: fix Vault's storage; " +
			"until then a restart of this node loses the login token"
	}
	return &logical.Response{Data: map[string]interface{}{
		fieldState:               state,
		fieldNeedsHuman:          h.NeedsHuman,
		fieldReason:              h.Reason,
		fieldLoginTokenExpiresAt: formatTime(claims.ExpiresAt),
		fieldNextRotationAt:      formatTime(cfg.nextRotationAt(now)),
		fieldRotationFailures:    cfg.RotationFailures,
	}}, nil
}
