package inabit

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// Display attributes shared by every mount's paths, as configFields is.
var (
	attrsVerbConfigure = &framework.DisplayAttributes{OperationVerb: "configure"}
	attrsVerbRead      = &framework.DisplayAttributes{OperationVerb: "read"}
	attrsVerbDelete    = &framework.DisplayAttributes{OperationVerb: "delete"}
	attrsVerbGenerate  = &framework.DisplayAttributes{OperationVerb: "generate"}
	attrsConfig        = &framework.DisplayAttributes{OperationPrefix: "inabit", OperationSuffix: "configuration"}
)

// configFields is the config path's schema, one map for every mount: the framework only reads a
// path's fields and their display attributes, and one plugin process serves every mount (issue
// 19: built per mount, they were some 4.5 KB of each one's heap).
var configFields = map[string]*framework.FieldSchema{
	fieldLoginToken: {
		Type: framework.TypeString,
		Description: "The API user's inabit login token (a JWT). Required on the first write; " +
			"later writes without it keep the stored one. Never returned.",
		DisplayAttrs: &framework.DisplayAttributes{Name: "Login token", Sensitive: true},
	},
	fieldURL: {
		Type:        framework.TypeString,
		Description: "inabit GraphQL endpoint. Must be https://, or http:// on a loopback host.",
		Default:     defaultURL,
		DisplayAttrs: &framework.DisplayAttributes{
			Name: "GraphQL URL",
		},
	},
	fieldRotationPeriod: {
		Type: framework.TypeDurationSecond,
		Description: "Rotate the login token once it is this old (from its iat, else from when Vault " +
			"stored it). At least 1m and shorter than the token's lifetime. 0 means not set, as in Vault: " +
			"with rotation_schedule the schedule applies, alone it rotates the token only before it expires.",
		Default:      int(defaultRotationPeriod.Seconds()),
		DisplayAttrs: &framework.DisplayAttributes{Name: "Rotation period"},
	},
	fieldRotationSchedule: {
		Type: framework.TypeString,
		Description: "Rotate on a 5-field cron schedule evaluated in UTC instead of by age, e.g. \"0 10 * * 2\" " +
			"(Tuesdays 10:00) so rotations happen when people can react. Excludes rotation_period; setting one clears " +
			"the other. The token's expiry still wins if a slot would come too late. At most 512 bytes.",
		DisplayAttrs: &framework.DisplayAttributes{Name: "Rotation schedule"},
	},
	fieldRotationWindow: {
		Type: framework.TypeDurationSecond,
		Description: "With rotation_schedule only: a slot missed while no node could rotate may still be caught up " +
			"this long after it; later, rotation waits for the next slot. Without it, a missed slot is caught up at " +
			"the next tick. At least 1h.",
		DisplayAttrs: &framework.DisplayAttributes{Name: "Rotation window"},
	},
	fieldDisableAutomatedRotation: {
		Type:         framework.TypeBool,
		Description:  "Turn off periodic rotation. rotate-root still works.",
		Default:      false,
		DisplayAttrs: &framework.DisplayAttributes{Name: "Disable automated rotation"},
	},
	fieldAccessTokenMinTTL: {
		Type: framework.TypeDurationSecond,
		Description: "Hand out a cached access token only while at least this much of its life remains. " +
			"Set it to the access token lifetime to fetch a new token for every read (reads that arrive " +
			"while a fetch is in flight share it). At least 2m.",
		Default:      int(defaultAccessTokenMinTTL.Seconds()),
		DisplayAttrs: &framework.DisplayAttributes{Name: "Access token minimum TTL"},
	},
	fieldRequestTimeout: {
		Type:         framework.TypeDurationSecond,
		Description:  "Timeout of each call to inabit, between 1s and 5m.",
		Default:      int(defaultRequestTimeout.Seconds()),
		DisplayAttrs: &framework.DisplayAttributes{Name: "Request timeout"},
	},
	fieldRefreshGracePeriod: {
		Type: framework.TypeDurationSecond,
		Description: "After a refresh whose answer never came (timeout, dropped connection, 5xx, a proxy's page), " +
			"how long inabit is given to finish applying it before the engine asks whether it did; no refresh is " +
			"sent meanwhile. Between 30s and 1h.",
		Default:      int(defaultRefreshGracePeriod.Seconds()),
		DisplayAttrs: &framework.DisplayAttributes{Name: "Refresh grace period"},
	},
	fieldVerifyConnection: {
		Type: framework.TypeBool,
		Description: "On write, fetch an access token with the login token before saving; a rejected " +
			"or unreachable token is refused and nothing is saved.",
		Default:      true,
		DisplayAttrs: &framework.DisplayAttributes{Name: "Verify connection"},
	},
	fieldForce: {
		Type: framework.TypeBool,
		Description: "Delete only: delete the config even though it holds a live login token, which is then " +
			"gone (inabit cannot give it back). Without it such a delete is refused. " +
			"`vault delete <mount>/config force=true`, or DELETE with ?force=true.",
		Query:        true,
		DisplayAttrs: &framework.DisplayAttributes{Name: "Force delete"},
	},
}

func pathConfig(b *backend) *framework.Path {
	write := &framework.PathOperation{
		Callback:                    b.pathConfigWrite,
		DisplayAttrs:                attrsVerbConfigure,
		ForwardPerformanceStandby:   true,
		ForwardPerformanceSecondary: true,
	}
	return &framework.Path{
		Pattern:      pathConfigPattern,
		DisplayAttrs: attrsConfig,
		Fields:       configFields,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathConfigRead,
				DisplayAttrs: attrsVerbRead,
			},
			logical.CreateOperation: write,
			logical.UpdateOperation: write,
			logical.DeleteOperation: &framework.PathOperation{
				Callback:                    b.pathConfigDelete,
				DisplayAttrs:                attrsVerbDelete,
				ForwardPerformanceStandby:   true,
				ForwardPerformanceSecondary: true,
			},
		},
		ExistenceCheck:  b.pathConfigExists,
		HelpSynopsis:    "Configure the inabit API user's login token and how it is rotated.",
		HelpDescription: pathConfigHelp,
	}
}

const pathConfigHelp = `
Write the API user's login token once; the engine rotates it before it expires.
Rotate by age (rotation_period) or on a UTC cron schedule (rotation_schedule, with an optional
rotation_window); either way the token is rotated before it expires.
Reads return the settings and rotation status, never the token:
login_token_issued_at, login_token_expires_at, last_rotated_at, next_rotation_at and
next_rotation_reason (rotation_period, rotation_schedule, expiry, retry or outcome_check),
last_rotation_error (empty when healthy), rotation_failures and login_token_lost
(true once the stored token is known dead; only writing a new login_token clears it).
Deleting the config forgets the login token and every cached access token. While the
stored login token is live (not known lost, not expired) a delete is refused unless it
carries force=true: it is the only copy, and inabit cannot give it back.
`

var errNoConfig = errors.New(`inabit is not configured: write the API user's login token to this mount's config first`)

// notConfigured names the real mount: "vault write inabit-admin/config login_token=@login-token.jwt".
func (b *backend) notConfigured() *logical.Response {
	return logical.ErrorResponse(`inabit is not configured: write the API user's login token first, for example "vault write %s login_token=@login-token.jwt"`, b.configPath())
}

func (b *backend) pathConfigExists(ctx context.Context, req *logical.Request, _ *framework.FieldData) (bool, error) {
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return false, err
	}
	return cfg != nil, nil
}

func (b *backend) pathConfigRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	b.noteMount(req)
	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, nil
	}
	claims := cfg.claims()
	next, reason := cfg.plannedRotation(b.now())
	return &logical.Response{Data: map[string]interface{}{
		fieldURL:                      cfg.URL,
		fieldRotationPeriod:           int64(cfg.RotationPeriod.Seconds()),
		fieldRotationSchedule:         cfg.RotationSchedule,
		fieldRotationWindow:           int64(cfg.RotationWindow.Seconds()),
		fieldNextRotationReason:       reason,
		fieldDisableAutomatedRotation: cfg.DisableAutomatedRotation,
		fieldAccessTokenMinTTL:        int64(cfg.AccessTokenMinTTL.Seconds()),
		fieldRequestTimeout:           int64(cfg.RequestTimeout.Seconds()),
		fieldVerifyConnection:         cfg.VerifyConnection,
		fieldRefreshGracePeriod:       int64(cfg.RefreshGracePeriod.Seconds()),
		fieldLoginTokenIssuedAt:       formatTime(claims.IssuedAt),
		fieldLoginTokenExpiresAt:      formatTime(claims.ExpiresAt),
		fieldLastRotatedAt:            formatTime(cfg.LastRotatedAt),
		fieldNextRotationAt:           formatTime(next),
		fieldLastRotationError:        cfg.LastRotationError,
		fieldRotationFailures:         cfg.RotationFailures,
		fieldLoginTokenLost:           cfg.LoginTokenLost,
	}}, nil
}

func formatTime(t time.Time) string { return rotation.FormatTime(t) }

func (b *backend) pathConfigWrite(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	if err := d.ValidateStrict(); err != nil {
		return logical.ErrorResponse("invalid config: %s; the fields are %s", inabitapi.Redact(err.Error()), strings.Join(configFieldNames(), ", ")), nil
	}
	b.noteMount(req)
	if _, ok := d.Raw[fieldForce]; ok {
		return logical.ErrorResponse("%s applies only to a delete of %s; a write never needs it. Nothing was saved.", fieldForce, b.configPath()), nil
	}
	if !b.WriteSafeReplicationState() {
		// Verification calls inabit; only the primary's active node may (the write is forwarded).
		return nil, logical.ErrReadOnly
	}

	b.mu.Lock()
	defer b.mu.Unlock()

	old, err := b.authoritativeConfig(ctx, req.Storage)
	if err != nil {
		return nil, err
	}
	if _, tokenGiven := d.GetOk(fieldLoginToken); old == nil && !tokenGiven {
		return logical.ErrorResponse("%s is required on the first write: write it first with \"vault write %s %s=@login-token.jwt\", "+
			"then the other settings (with Terraform: out of band, before the apply that writes them). Nothing was saved.",
			fieldLoginToken, b.configPath(), fieldLoginToken), nil
	}
	cfg := old.clone()
	if cfg == nil {
		cfg = defaultConfig()
	}
	now := b.now()
	changed, err := cfg.Update(d, old == nil, now)
	if err != nil {
		return logical.ErrorResponse(err.Error()), nil
	}

	if _, tokenGiven := d.GetOk(fieldLoginToken); old != nil && !tokenGiven && !sameOrigin(old.URL, cfg.URL) {
		// Whoever may update config but not read the token must not be able to send it elsewhere.
		return logical.ErrorResponse("%s: moving to another scheme, host or port (%s -> %s) would send the stored login token there; "+
			"write %s in the same request to change it. Nothing was saved.", fieldURL, origin(old.URL), origin(cfg.URL), fieldLoginToken), nil
	}

	_, heldWAL, held := b.login.held()
	_, tokenGiven := d.GetOk(fieldLoginToken)
	tokenChanged := old == nil || cfg.LoginToken != old.LoginToken
	urlChanged := old == nil || cfg.URL != old.URL
	if tokenChanged {
		cfg.LoginTokenStoredAt = now
	}
	if tokenGiven || held {
		// A login token written, new or the same one again, starts a clean history, LOST
		// included: only this clears it, once it is verified like any new token. A write while a
		// rotated token is held saves that token: its "held in memory" status is over too.
		cfg.clearRotationStatus()
	}

	// Clearing LOST with the same token, or saving a held rotated token, needs inabit's word that
	// it works, whatever verify_connection says: nothing else would prove the status true.
	mustVerify := held || tokenGiven && !tokenChanged && old.LoginTokenLost
	var verified *accessToken
	if mustVerify || cfg.VerifyConnection && (tokenGiven || urlChanged || req.Operation == logical.CreateOperation) {
		start, startMono := b.now(), b.mono()
		tok, err := b.clientFor(cfg).AccessToken(ctx, cfg.LoginToken)
		if err != nil {
			return logical.ErrorResponse("%s: could not verify it against %s: %s. Nothing was saved. "+
				"Check the token and the url, or set %s=false to save without checking.",
				fieldLoginToken, cfg.URL, err, fieldVerifyConnection), nil
		}
		verified = newAccessToken(tok, start, startMono)
	}

	if old == nil || changed || held || *cfg != *old {
		if err := putConfig(ctx, req.Storage, cfg); err != nil {
			return nil, fmt.Errorf("saving config: %w", err)
		}
	}
	if held {
		wctx, cancel := detached(ctx, rotation.StorageBound)
		b.deleteWAL(wctx, req.Storage, heldWAL)
		cancel()
	}

	// Any config write is also the documented way to drop a cached access token.
	b.loginMu.Lock()
	b.login.use(cfg, verified)
	switch {
	case verified != nil:
		b.login.noteAlive(cfg.LoginToken)
	case tokenGiven:
		b.login.forgetRejection(cfg.LoginToken)
	}
	b.loginMu.Unlock()

	if tokenChanged {
		b.logger.Info("login token written to config", "expires_at", formatTime(cfg.claims().ExpiresAt))
	}
	var warnings []string
	if tok := cfg.token(cfg.claims()); rotation.TooShortLived(tok, cfg.Budget()) {
		warnings = append(warnings, rotation.ShortLivedWarning(tok, cfg.Budget(), b.mountOrDefault()))
	} else if w := rotation.NoPolicyWarning(cfg.Settings, tok, b.mountOrDefault()); w != "" {
		warnings = append(warnings, w)
	}
	if len(warnings) > 0 {
		return &logical.Response{Warnings: warnings}, nil
	}
	return nil, nil
}

// pathConfigDelete forgets the config, but a plain delete of a live login token is refused: it is
// the only copy (inabit killed every earlier one when it minted it), and tools delete without
// asking (terraform destroy of the resource that wrote the settings). force=true deletes anyway.
func (b *backend) pathConfigDelete(ctx context.Context, req *logical.Request, d *framework.FieldData) (*logical.Response, error) {
	b.noteMount(req)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !d.Get(fieldForce).(bool) {
		cfg, err := b.authoritativeConfig(ctx, req.Storage)
		if err != nil {
			return nil, err
		}
		if cfg != nil && cfg.holdsLiveLoginToken(b.now()) {
			path := b.configPath()
			expires := "expiry unknown"
			if exp := cfg.claims().ExpiresAt; !exp.IsZero() {
				expires = "it expires at " + formatTime(exp)
			}
			return logical.ErrorResponse("%s holds the API user's live login token (%s), the only copy: inabit killed the earlier ones "+
				"when it issued it, and only inabit support can issue another. Nothing was deleted. To delete it anyway: "+
				"\"vault delete %s %s=true\" (HTTP: DELETE /v1/%s?%s=true). Terraform: set disable_delete = true on the "+
				"vault_generic_endpoint that writes %s.", path, expires, path, fieldForce, path, fieldForce, path), nil
		}
	}
	if err := req.Storage.Delete(ctx, configStorageKey); err != nil {
		return nil, fmt.Errorf("deleting config: %w", err)
	}
	b.loginMu.Lock()
	b.login.dropAll()
	b.loginMu.Unlock()
	b.dropClient()
	return nil, nil
}

// loadConfig returns the config in use (cached, else from storage), or nil when none exists.
// The result is a copy the caller may keep.
func (b *backend) loadConfig(ctx context.Context, s logical.Storage) (*inabitConfig, error) {
	cfg, gen := b.login.current()
	if cfg != nil {
		return cfg, nil
	}
	cfg, err := readConfig(ctx, s)
	if err != nil || cfg == nil {
		return nil, err
	}
	b.login.fill(cfg, gen)
	return cfg, nil
}

// authoritativeConfig is what a writer must start from: the held in-memory config when a
// rotated token is waiting to be persisted, else storage itself (another node may have written).
// Callers hold b.mu.
func (b *backend) authoritativeConfig(ctx context.Context, s logical.Storage) (*inabitConfig, error) {
	if cfg, _, ok := b.login.held(); ok {
		return cfg, nil
	}
	return readConfig(ctx, s)
}
