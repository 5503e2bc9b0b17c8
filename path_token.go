package inabit

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

const (
	pathTokenPattern = "token"
	secretTypeAccess = "inabit_access_token"

	fieldAccessToken = "access_token"
	fieldTokenType   = "token_type"
	fieldExpiresAt   = "expires_at"

	// leaseSafetyMargin: a lease ends this long before the access token does, so Vault Agent
	// (which re-fetches at 85-95 % of the lease) and API clients never hold an expired token.
	leaseSafetyMargin = 60 * time.Second
	// assumedAccessTokenLifetime applies when an access token carries no readable exp.
	assumedAccessTokenLifetime = 15 * time.Minute
	// loginTokenDangerWindow: a login token this close to expiry makes every token read warn.
	loginTokenDangerWindow = 72 * time.Hour
)

type accessToken struct {
	token string
	// fetchedAt is when the call that minted it started, on Vault's wall clock, and fetchedMono
	// the same moment on the monotonic clock, which every remaining-life figure is counted on: a
	// wall-clock step backwards must not make an expired token look fresh.
	fetchedAt   time.Time
	fetchedMono time.Duration
	// life is the token's whole life: exp - iat, counted from fetchedAt.
	life time.Duration
}

// newAccessToken dates a token fetched at fetchedAt (taken before the call). With iat and exp its
// life is exp - iat counted on this node's clocks: Vault's clock and inabit's may disagree by
// minutes, and comparing exp with Vault's clock would either refetch on every read or hand out
// leases that outlive the token.
func newAccessToken(tok string, fetchedAt time.Time, fetchedMono time.Duration) *accessToken {
	life := assumedAccessTokenLifetime
	if c, err := parseClaims(tok); err == nil {
		switch l := c.lifetime(); {
		case l > 0:
			life = l
		case !c.ExpiresAt.IsZero():
			life = c.ExpiresAt.Sub(fetchedAt)
		}
	}
	return &accessToken{token: tok, fetchedAt: fetchedAt, fetchedMono: fetchedMono, life: life}
}

// expiresAt is when the token expires, as Vault's wall clock read when it was fetched.
func (a *accessToken) expiresAt() time.Time { return a.fetchedAt.Add(a.life) }

// remaining is how much of its life is left at monotonic time mono and wall time now: the smaller
// of the two estimates, so neither a wall-clock step backwards nor a suspended host (whose
// monotonic clock stood still while inabit's did not) makes an expired token look fresh. A
// forward step only makes a token be fetched early.
func (a *accessToken) remaining(mono time.Duration, now time.Time) time.Duration {
	return min(a.life-(mono-a.fetchedMono), a.expiresAt().Sub(now))
}

// leaseTTL ends the lease leaseSafetyMargin before the token dies; a token with less than twice
// the margin left gets half its remaining life instead, never zero (zero means "mount default").
func (a *accessToken) leaseTTL(mono time.Duration, now time.Time) time.Duration {
	remaining := a.remaining(mono, now)
	var ttl time.Duration
	if remaining >= 2*leaseSafetyMargin {
		ttl = remaining - leaseSafetyMargin
	} else {
		ttl = remaining / 2
	}
	return max(ttl.Truncate(time.Second), time.Second)
}

func pathToken(b *backend) *framework.Path {
	return &framework.Path{
		Pattern:      pathTokenPattern,
		DisplayAttrs: attrsToken,
		Operations: map[logical.Operation]framework.OperationHandler{
			logical.ReadOperation: &framework.PathOperation{
				Callback:     b.pathTokenRead,
				DisplayAttrs: attrsVerbGenerate,
			},
		},
		HelpSynopsis:    "Get a short-lived inabit access token as a lease.",
		HelpDescription: pathTokenHelp,
	}
}

const pathTokenHelp = `
Returns an inabit access token (access_token, token_type "Bearer", expires_at) as a
non-renewable lease that ends 60 s before the token expires. Concurrent reads share one
cached token and one upstream call. Read again when the lease ends; Vault Agent does this
on its own. Revoking a lease does not revoke anything at inabit (inabit has no such call):
to cut off cached tokens, run rotate-root or write the config.
`

// Shared by every mount, as configFields is.
var (
	attrsToken        = &framework.DisplayAttributes{OperationPrefix: "inabit", OperationSuffix: "access-token"}
	accessTokenFields = map[string]*framework.FieldSchema{
		fieldAccessToken: {Type: framework.TypeString, Description: "inabit access token (JWT) for the Authorization: Bearer header."},
		fieldTokenType:   {Type: framework.TypeString, Description: `Always "Bearer".`},
		fieldExpiresAt:   {Type: framework.TypeString, Description: "When the access token expires (RFC 3339, UTC)."},
	}
)

func secretAccessToken(b *backend) *framework.Secret {
	return &framework.Secret{
		Type:            secretTypeAccess,
		Fields:          accessTokenFields,
		DefaultDuration: assumedAccessTokenLifetime - leaseSafetyMargin,
		// A failing Revoke would make leases irrevocable and block "secrets disable", and Vault
		// calls Revoke on every expiry, so it must succeed and must not touch the shared cache.
		Revoke: func(context.Context, *logical.Request, *framework.FieldData) (*logical.Response, error) {
			return nil, nil
		},
	}
}

func (b *backend) pathTokenRead(ctx context.Context, req *logical.Request, _ *framework.FieldData) (*logical.Response, error) {
	cfg, at, errResp, err := b.sharedAccessToken(ctx, req)
	if errResp != nil || err != nil {
		return errResp, err
	}

	now := b.now()
	resp := b.Secret(secretTypeAccess).Response(map[string]interface{}{
		fieldAccessToken: at.token,
		fieldTokenType:   "Bearer",
		fieldExpiresAt:   formatTime(at.expiresAt()),
	}, nil)
	// Vault's core caps this with the mount's max_lease_ttl (framework.CalculateTTL); asking the
	// system view here ourselves was a gRPC round trip back to Vault on every read.
	ttl := at.leaseTTL(b.mono(), now)
	resp.Secret.TTL = ttl
	resp.Secret.MaxTTL = ttl
	b.addLoginTokenWarnings(resp, cfg, now)
	return resp, nil
}

// sharedAccessToken is everything token and static-token share, so that both hand out the same
// cached access token and fail the same way: the config, the LOST short-cut, the shared cache and
// its single upstream call, and the errors. errResp is the not-configured answer.
func (b *backend) sharedAccessToken(ctx context.Context, req *logical.Request) (cfg *inabitConfig, at *accessToken, errResp *logical.Response, err error) {
	return b.sharedAccessTokenOnce(ctx, req, true)
}

// sharedAccessTokenOnce is sharedAccessToken; reread allows one retry with the stored token.
func (b *backend) sharedAccessTokenOnce(ctx context.Context, req *logical.Request, reread bool) (cfg *inabitConfig, at *accessToken, errResp *logical.Response, err error) {
	b.noteMount(req)
	cfg, err = b.loadConfig(ctx, req.Storage)
	if err != nil {
		return nil, nil, nil, err
	}
	if cfg == nil {
		return nil, nil, b.notConfigured(), nil
	}
	if cfg.LoginTokenLost {
		// The token is known dead: say why instead of asking inabit to reject it again.
		return nil, nil, nil, logical.CodedError(http.StatusBadGateway, cfg.LastRotationError)
	}
	at, err = b.accessTokenFor(ctx, cfg)
	if reread && errors.Is(err, inabitapi.ErrUnauthorized) {
		// This node may not have seen another node's rotation yet (a standby between the active
		// node's save and its own invalidation): look at storage before telling anyone to
		// replace a token that works.
		if stored, serr := readConfig(ctx, req.Storage); serr == nil && stored != nil && stored.LoginToken != cfg.LoginToken {
			if held := b.login.invalidate(); !held {
				b.logger.Debug("inabit rejected a login token storage has since replaced; retrying with the stored one")
				return b.sharedAccessTokenOnce(ctx, req, false)
			}
		}
	}
	if err != nil && errors.Is(err, inabitapi.ErrUnauthorized) && b.onPerformanceStandby() {
		// Ticks run on the active node only, so a rejection noted in a performance standby's
		// memory would never be confirmed or recorded: hand the read to the active node, which
		// meets the same rejection and takes it from there.
		return nil, nil, nil, logical.ErrReadOnly
	}
	if err != nil {
		return nil, nil, nil, tokenReadError(err, b.configPath())
	}
	return cfg, at, nil, nil
}

// onPerformanceStandby says this node serves reads without ticking (Vault Enterprise).
func (b *backend) onPerformanceStandby() bool {
	sys := b.System()
	return sys != nil && sys.ReplicationState().HasState(consts.ReplicationPerformanceStandby)
}

func (b *backend) addLoginTokenWarnings(resp *logical.Response, cfg *inabitConfig, now time.Time) {
	for _, w := range loginTokenWarnings(cfg, b.login.claims(cfg), now, b.mountOrDefault()) {
		resp.AddWarning(w)
	}
}

// loginTokenWarnings tell every reader, not only whoever reads config, that the mount is headed
// for an outage.
func loginTokenWarnings(cfg *inabitConfig, claims tokenClaims, now time.Time, mount string) []string {
	var warnings []string
	if cfg.LastRotationError != "" {
		warnings = append(warnings, fmt.Sprintf("the inabit login token is in danger: rotation is failing (%d failures): %s. Read %sconfig for status.",
			cfg.RotationFailures, cfg.LastRotationError, mount))
	}
	if w := rotation.ScheduleWarning(cfg.Settings, cfg.Status, cfg.token(claims), now, mount); w != "" {
		warnings = append(warnings, w)
	}
	if exp := claims.ExpiresAt; !exp.IsZero() && exp.Sub(now) < loginTokenDangerWindow {
		warnings = append(warnings, fmt.Sprintf("the inabit login token expires at %s (in %s): run \"vault write -f %srotate-root\" or write a new login_token to %sconfig.",
			formatTime(exp), exp.Sub(now).Truncate(time.Minute), mount, mount))
	}
	return warnings
}

// tokenReadError maps upstream failures to HTTP statuses a client can act on. Coded errors must
// not be wrapped: the plugin gRPC layer only recognises them unwrapped.
func tokenReadError(err error, configPath string) error {
	var ue *inabitapi.Error
	if !errors.As(err, &ue) {
		if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
			return logical.CodedError(http.StatusServiceUnavailable, "request ended before inabit answered")
		}
		return err
	}
	switch {
	case errors.Is(ue, inabitapi.ErrUnauthorized):
		return logical.CodedError(http.StatusBadGateway, ue.Error()+`: the stored login token is no longer valid; write a new login_token to `+configPath)
	case errors.Is(ue, inabitapi.ErrRefused):
		return logical.CodedError(http.StatusBadGateway, ue.Error()+`: if this persists, check what stands between Vault and inabit (a WAF or proxy), and the API user's role`)
	case errors.Is(ue, inabitapi.ErrRateLimited):
		return logical.CodedError(http.StatusTooManyRequests, ue.Error())
	case errors.Is(ue, inabitapi.ErrUnavailable):
		return logical.CodedError(http.StatusServiceUnavailable, ue.Error())
	default:
		return logical.CodedError(http.StatusBadGateway, ue.Error())
	}
}

// accessToken returns a cached token with at least AccessTokenMinTTL left, or fetches one. All
// concurrent callers of one generation share a single upstream call.
func (b *backend) accessToken(ctx context.Context, s logical.Storage) (*accessToken, error) {
	cfg, err := b.loadConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNoConfig
	}
	return b.accessTokenFor(ctx, cfg)
}

// accessTokenFor is accessToken for a caller that already holds the config (the hot read path
// would otherwise copy it twice).
func (b *backend) accessTokenFor(ctx context.Context, cfg *inabitConfig) (*accessToken, error) {
	cached, gen := b.login.cachedAccess()
	if cached != nil && cached.remaining(b.mono(), b.now()) >= cfg.AccessTokenMinTTL {
		return cached, nil
	}

	ch := b.flight.DoChan(strconv.FormatUint(gen, 10), func() (interface{}, error) {
		return b.fetchAccessToken(gen, cfg)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*accessToken), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchAccessToken runs detached from any one reader's context: one impatient client must not
// fail the call that every other reader is waiting on. A rejection by inabit itself is remembered
// for the tick to confirm and record.
func (b *backend) fetchAccessToken(gen uint64, fallback *inabitConfig) (*accessToken, error) {
	b.loginMu.RLock()
	defer b.loginMu.RUnlock()

	cfg, _ := b.login.current()
	if cfg == nil {
		cfg = fallback
	}
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Budget().Probe())
	defer cancel()
	start, startMono := b.now(), b.mono()
	tok, err := b.clientFor(cfg).AccessToken(ctx, cfg.LoginToken)
	if err != nil {
		if a, _ := answerOf(err); a == rotation.Rejected {
			b.login.noteRejected(cfg.LoginToken, b.mono())
		}
		b.logger.Warn("fetching an inabit access token failed", "error", err, "answer_said", inabitSaid(err))
		return nil, err
	}
	b.login.noteAlive(cfg.LoginToken)
	at := newAccessToken(tok, start, startMono)
	b.login.cacheAccess(gen, cfg.LoginToken, at)
	return at, nil
}
