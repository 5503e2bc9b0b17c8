package inabit

import (
	"context"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// This file is the mount's one storage entry: its fields, their validation, and the schedule they
// imply. path_config.go holds the path and its handlers.

const (
	pathConfigPattern = "config"
	configStorageKey  = "config"

	fieldLoginToken               = "login_token"
	fieldURL                      = "url"
	fieldRotationPeriod           = "rotation_period"
	fieldRotationSchedule         = "rotation_schedule"
	fieldRotationWindow           = "rotation_window"
	fieldDisableAutomatedRotation = "disable_automated_rotation"
	fieldAccessTokenMinTTL        = "access_token_min_ttl"
	fieldRequestTimeout           = "request_timeout"
	fieldVerifyConnection         = "verify_connection"
	fieldRefreshGracePeriod       = "refresh_grace_period"
	// fieldForce is a delete's only field, never stored: delete a live login token anyway.
	fieldForce = "force"

	fieldLoginTokenIssuedAt  = "login_token_issued_at"
	fieldLoginTokenExpiresAt = "login_token_expires_at"
	fieldLastRotatedAt       = "last_rotated_at"
	fieldNextRotationAt      = "next_rotation_at"
	fieldNextRotationReason  = "next_rotation_reason"
	fieldLastRotationError   = "last_rotation_error"
	fieldRotationFailures    = "rotation_failures"
	fieldLoginTokenLost      = "login_token_lost"

	defaultRotationPeriod    = 360 * time.Hour
	defaultAccessTokenMinTTL = 10 * time.Minute
	defaultRequestTimeout    = 30 * time.Second
	// defaultRefreshGracePeriod is how long a refresh whose answer never came is given to be
	// applied by inabit before we ask whether it was. No HTTP front end keeps a call open this
	// long (load balancers give up after one or two minutes), and request_timeout is at most 5m.
	defaultRefreshGracePeriod = 10 * time.Minute

	minRotationPeriod     = time.Minute
	maxRotationPeriod     = 8760 * time.Hour
	minAccessTokenMinTTL  = 2 * leaseSafetyMargin
	maxAccessTokenMinTTL  = 24 * time.Hour
	minRequestTimeout     = time.Second
	maxRequestTimeout     = 5 * time.Minute
	minRefreshGracePeriod = 30 * time.Second
	maxRefreshGracePeriod = time.Hour

	maxLoginTokenLen = 8 << 10
	maxURLLen        = 2048
	// A login token "valid" for more than this is a mistake or a forgery, not a 30-day token.
	maxLoginTokenFuture = 10 * 365 * 24 * time.Hour
	// clockSkew tolerates an inabit clock slightly ahead of Vault's when checking iat.
	clockSkew = 5 * time.Minute
)

// inabitConfig is the one storage entry of a mount: the login token, the settings, and the
// rotation status. The protocol's settings and status are embedded so the stored JSON stays flat.
type inabitConfig struct {
	LoginToken string `json:"login_token"`
	URL        string `json:"url"`
	rotation.Settings
	AccessTokenMinTTL time.Duration `json:"access_token_min_ttl"`
	VerifyConnection  bool          `json:"verify_connection"`

	// LoginTokenStoredAt stands in for iat when the token has none.
	LoginTokenStoredAt time.Time `json:"login_token_stored_at"`
	LastRotatedAt      time.Time `json:"last_rotated_at,omitempty"`
	rotation.Status
}

func defaultConfig() *inabitConfig {
	return &inabitConfig{
		URL: defaultURL,
		Settings: rotation.Settings{
			RotationPeriod:     defaultRotationPeriod,
			RequestTimeout:     defaultRequestTimeout,
			RefreshGracePeriod: defaultRefreshGracePeriod,
		},
		AccessTokenMinTTL: defaultAccessTokenMinTTL,
		VerifyConnection:  true,
	}
}

func (c *inabitConfig) clone() *inabitConfig {
	if c == nil {
		return nil
	}
	cp := *c
	return &cp
}

// claims of the login token; a stored token always parsed when it was written, so an error here
// only means "unknown".
func (c *inabitConfig) claims() tokenClaims {
	cl, _ := parseClaims(c.LoginToken)
	return cl
}

// token is what the protocol knows of the login token, from claims the caller parsed (the token
// read path memoises them).
func (c *inabitConfig) token(cl tokenClaims) rotation.Token {
	return rotation.Token{IssuedAt: cl.IssuedAt, ExpiresAt: cl.ExpiresAt, StoredAt: c.LoginTokenStoredAt}
}

// plannedToken is the stored token as the plan sees it: its claims, and its spread among the
// process's mounts (herd.go).
func (c *inabitConfig) plannedToken() rotation.Token {
	tok := c.token(c.claims())
	tok.Spread = herdSpread(c)
	return tok
}

// plannedRotation is when the next rotation is attempted and why; zero when nothing will be sent
// on its own.
func (c *inabitConfig) plannedRotation(now time.Time) (time.Time, string) {
	return rotation.Plan(c.Settings, c.Status, c.plannedToken(), now)
}

// pastExpiryDeadline says whether now is at or past the token's expiry deadline, as the plan
// sets it: a rotation due then must not wait for anything.
func (c *inabitConfig) pastExpiryDeadline(now time.Time) bool {
	return rotation.PastExpiryDeadline(c.Settings, c.plannedToken(), now)
}

// urgentRotation says whether a rotation due for reason at now must not be held back: at or past
// the expiry deadline, whatever rule made it due.
func (c *inabitConfig) urgentRotation(reason string, now time.Time) bool {
	return reason == rotation.ReasonExpiry || c.pastExpiryDeadline(now)
}

// nextRotationAt is plannedRotation's time.
func (c *inabitConfig) nextRotationAt(now time.Time) time.Time {
	t, _ := c.plannedRotation(now)
	return t
}

// holdsLiveLoginToken says the stored login token may still work: not known lost, not expired.
// Deleting such a config loses the only copy of the token.
func (c *inabitConfig) holdsLiveLoginToken(now time.Time) bool {
	exp := c.claims().ExpiresAt
	return c.LoginToken != "" && !c.LoginTokenLost && (exp.IsZero() || exp.After(now))
}

// clearRotationStatus is the status of a mount whose rotation problems are behind it.
func (c *inabitConfig) clearRotationStatus() { c.Status = rotation.Status{} }

func configFieldNames() []string {
	return []string{fieldLoginToken, fieldURL, fieldRotationPeriod, fieldRotationSchedule, fieldRotationWindow, fieldDisableAutomatedRotation,
		fieldAccessTokenMinTTL, fieldRequestTimeout, fieldVerifyConnection, fieldRefreshGracePeriod}
}

// Update validates every field present in d and applies it to c, as the github plugin's config
// does; changed says whether c differs afterwards, so an unchanged config is not saved. Each error
// names the field and the fix, and on error c is left as it was.
func (c *inabitConfig) Update(d *framework.FieldData, creating bool, now time.Time) (changed bool, err error) {
	updated := c.clone()
	if err := applyConfigFields(updated, d, creating, now); err != nil {
		return false, err
	}
	changed = *updated != *c
	*c = *updated
	return changed, nil
}

// applyConfigFields copies every field present in d into cfg, validated.
func applyConfigFields(cfg *inabitConfig, d *framework.FieldData, creating bool, now time.Time) error {
	if raw, ok := d.GetOk(fieldLoginToken); ok {
		tok, err := validateLoginToken(raw.(string), now)
		if err != nil {
			return err
		}
		cfg.LoginToken = tok
	} else if creating {
		return fmt.Errorf("%s is required: write the API user's login token, for example %s=@login-token.jwt", fieldLoginToken, fieldLoginToken)
	}

	if raw, ok := d.GetOk(fieldURL); ok {
		u, err := validateURL(raw.(string))
		if err != nil {
			return err
		}
		cfg.URL = u
	}
	if raw, ok := d.GetOk(fieldDisableAutomatedRotation); ok {
		cfg.DisableAutomatedRotation = raw.(bool)
	}
	if raw, ok := d.GetOk(fieldVerifyConnection); ok {
		cfg.VerifyConnection = raw.(bool)
	}
	durations := []struct {
		field    string
		dst      *time.Duration
		min, max time.Duration
	}{
		{fieldRotationPeriod, &cfg.RotationPeriod, minRotationPeriod, maxRotationPeriod},
		{fieldAccessTokenMinTTL, &cfg.AccessTokenMinTTL, minAccessTokenMinTTL, maxAccessTokenMinTTL},
		{fieldRequestTimeout, &cfg.RequestTimeout, minRequestTimeout, maxRequestTimeout},
		{fieldRefreshGracePeriod, &cfg.RefreshGracePeriod, minRefreshGracePeriod, maxRefreshGracePeriod},
	}
	for _, f := range durations {
		raw, ok := d.GetOk(f.field)
		if !ok {
			continue
		}
		v := time.Duration(raw.(int)) * time.Second
		if v == 0 && f.field == fieldRotationPeriod {
			*f.dst = 0 // Vault's "not set": applySchedule says what it means
			continue
		}
		if v < f.min || v > f.max {
			return fmt.Errorf("%s must be between %s and %s, got %s", f.field, f.min, f.max, v)
		}
		*f.dst = v
	}

	_, tokenGiven := d.GetOk(fieldLoginToken)
	return applySchedule(cfg, d, now, creating || tokenGiven)
}

// applySchedule handles the two ways to schedule, with Vault's rules and wording: rotation_period
// and rotation_schedule exclude each other, a write that sets one clears the other, and
// rotation_window needs a schedule. Either must fit inside the login token's lifetime.
// newToken says the login token is new in this write, so the schedule is checked against its
// lifetime even if the write does not touch the schedule; other writes are not refused for a
// token that inabit chose to make short-lived (its expiry wins anyway).
func applySchedule(cfg *inabitConfig, d *framework.FieldData, now time.Time, newToken bool) error {
	rawSchedule, scheduleGiven := d.GetOk(fieldRotationSchedule)
	rawPeriod, periodGiven := d.GetOk(fieldRotationPeriod)
	rawWindow, windowGiven := d.GetOk(fieldRotationWindow)
	// As in Vault (automatedrotationutil), rotation_period=0 and an empty rotation_schedule are
	// "not set": they exclude nothing, and a zero period switches no schedule off.
	periodSet := periodGiven && rawPeriod.(int) != 0
	if scheduleGiven && strings.TrimSpace(rawSchedule.(string)) != "" && periodSet {
		return fmt.Errorf("mutually exclusive fields %s and %s were both specified; only one of them can be provided", fieldRotationSchedule, fieldRotationPeriod)
	}
	switch {
	case scheduleGiven && strings.TrimSpace(rawSchedule.(string)) != "":
		if err := rotation.CheckScheduleLen(rawSchedule.(string)); err != nil {
			return err
		}
		expr := strings.Join(strings.Fields(rawSchedule.(string)), " ")
		if _, err := rotation.ParseSchedule(expr); err != nil {
			return err
		}
		if expr != cfg.RotationSchedule {
			cfg.ScheduleSetAt = now.UTC()
		}
		cfg.RotationSchedule, cfg.RotationPeriod = expr, 0
	case scheduleGiven: // an empty schedule goes back to the period
		// ...the default one only when a schedule was in use: a period already "not set" (0)
		// stays so, or a Terraform apply would change a setting nobody named.
		hadSchedule := cfg.RotationSchedule != ""
		cfg.RotationSchedule, cfg.RotationWindow = "", 0
		if hadSchedule && cfg.RotationPeriod == 0 && !periodGiven {
			cfg.RotationPeriod = defaultRotationPeriod
		}
	case periodSet:
		cfg.RotationSchedule, cfg.RotationWindow = "", 0
	}
	if windowGiven {
		w := time.Duration(rawWindow.(int)) * time.Second
		if w != 0 && (w < rotation.MinRotationWindow || w > maxRotationPeriod) {
			return fmt.Errorf("%s must be between %s and %s, got %s", fieldRotationWindow, rotation.MinRotationWindow, maxRotationPeriod, w)
		}
		cfg.RotationWindow = w
	}
	if cfg.RotationWindow != 0 && cfg.RotationSchedule == "" {
		return fmt.Errorf("cannot use %s without %s", fieldRotationWindow, fieldRotationSchedule)
	}

	if cfg.RotationSchedule != "" && scheduleGiven {
		if sched, _ := rotation.ParseSchedule(cfg.RotationSchedule); sched.Next(now.UTC()).IsZero() {
			return fmt.Errorf("%s %q never fires: automated rotation would silently stop", fieldRotationSchedule, cfg.RotationSchedule)
		}
	}
	lifetime := cfg.claims().lifetime()
	if lifetime <= 0 && !cfg.claims().ExpiresAt.IsZero() {
		lifetime = cfg.claims().ExpiresAt.Sub(now)
	}
	if lifetime <= 0 {
		return nil
	}
	if cfg.RotationSchedule == "" && (newToken || periodGiven) && cfg.RotationPeriod >= lifetime {
		return fmt.Errorf("%s (%s) must be shorter than the login token's lifetime (%s), or the token expires before it is rotated; 360h suits 30-day tokens",
			fieldRotationPeriod, cfg.RotationPeriod, lifetime)
	}
	if cfg.RotationSchedule != "" && (newToken || scheduleGiven) {
		s, _ := rotation.ParseSchedule(cfg.RotationSchedule)
		if gap := rotation.SlotGapAtLeast(s, now, lifetime); gap > 0 {
			return fmt.Errorf("%s %q has slots %s apart, as long as or longer than the login token's lifetime (%s): "+
				"the token would expire between two rotations; choose slots closer together", fieldRotationSchedule, cfg.RotationSchedule, gap, lifetime)
		}
	}
	return nil
}

func validateLoginToken(tok string, now time.Time) (string, error) {
	// A trailing newline from login_token=@file is a copy-paste artefact, not part of the token.
	tok = strings.TrimSpace(tok)
	switch {
	case tok == "":
		return "", fmt.Errorf("%s is empty: write the API user's login token (a JWT)", fieldLoginToken)
	case len(tok) > maxLoginTokenLen:
		return "", fmt.Errorf("%s is %d bytes, longer than any inabit login token (max %d): check what was pasted", fieldLoginToken, len(tok), maxLoginTokenLen)
	case strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return "", fmt.Errorf("%s contains whitespace or control characters: paste the JWT alone", fieldLoginToken)
	case strings.HasPrefix(strings.ToLower(tok), "bearer"):
		return "", fmt.Errorf("%s must be the JWT alone, without the \"Bearer\" prefix", fieldLoginToken)
	}
	claims, err := parseClaims(tok)
	if err != nil {
		return "", fmt.Errorf("%s is %w: write the login token inabit issued for the API user", fieldLoginToken, err)
	}
	if !claims.ExpiresAt.IsZero() {
		if !claims.ExpiresAt.After(now) {
			return "", fmt.Errorf("%s expired at %s: ask inabit support for a new login token", fieldLoginToken, formatTime(claims.ExpiresAt))
		}
		if claims.ExpiresAt.Sub(now) > maxLoginTokenFuture {
			return "", fmt.Errorf("%s claims to expire at %s, which no inabit login token does: check that this is the login token", fieldLoginToken, formatTime(claims.ExpiresAt))
		}
	}
	if !claims.IssuedAt.IsZero() && claims.IssuedAt.After(now.Add(clockSkew)) {
		return "", fmt.Errorf("%s is issued in the future (%s): check the token, or this server's clock", fieldLoginToken, formatTime(claims.IssuedAt))
	}
	return tok, nil
}

func readConfig(ctx context.Context, s logical.Storage) (*inabitConfig, error) {
	entry, err := s.Get(ctx, configStorageKey)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	if entry == nil {
		return nil, nil
	}
	cfg := defaultConfig()
	if err := entry.DecodeJSON(cfg); err != nil {
		return nil, fmt.Errorf("decoding config: %w", err)
	}
	return cfg, nil
}

func putConfig(ctx context.Context, s logical.Storage, cfg *inabitConfig) error {
	entry, err := logical.StorageEntryJSON(configStorageKey, cfg)
	if err != nil {
		return err
	}
	return s.Put(ctx, entry)
}
