package inabit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

const (
	walKindRotation = "login-token-rotation"
	// defaultWALRollbackMinAge leaves a live rotation (bounded by request_timeout, at most 5m)
	// alone; only entries a dead node left behind are old enough to be rolled back.
	defaultWALRollbackMinAge = 10 * time.Minute

	eventRotate     = "inabit/login-token-rotate"
	eventRotateFail = "inabit/login-token-rotate-fail"

	triggerPeriodic = "periodic"
	triggerManual   = "rotate-root"
	triggerRecovery = "wal-rollback"
)

// rotationWAL records that a refresh may be in flight. It holds no secret: a hash is enough to
// tell whether the stored token moved on, and the old token itself is still in config.
type rotationWAL struct {
	OldTokenSHA256 string    `json:"old_token_sha256"`
	StartedAt      time.Time `json:"started_at"`
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// rotationRetryDelay is how long periodic rotation waits after the n-th consecutive failure:
// 1m, 2m, 4m … capped at 1h.
func rotationRetryDelay(failures int) time.Duration {
	eb := &backoff.ExponentialBackOff{
		InitialInterval:     time.Minute,
		RandomizationFactor: 0,
		Multiplier:          2,
		MaxInterval:         time.Hour,
	}
	eb.Reset()
	var d time.Duration
	for i := 0; i < failures && i < 64; i++ {
		d = eb.NextBackOff()
	}
	return d
}

// rotationError is returned by rotate. It says whether the login token is gone so callers (and
// the status fields) can be as loud as the situation deserves.
type rotationError struct {
	msg  string
	lost bool
	err  error
}

func (e *rotationError) Error() string { return e.msg }
func (e *rotationError) Unwrap() error { return e.err }

// periodicFunc runs on the active node about once a minute.
func (b *backend) periodicFunc(ctx context.Context, req *logical.Request) error {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	b.mu.Lock()
	if err := b.persistUnsavedLocked(ctx, req.Storage); err != nil {
		b.mu.Unlock()
		return nil
	}
	b.settleStaleWALsLocked(ctx, req.Storage)
	b.mu.Unlock()

	cfg, err := b.loadConfig(ctx, req.Storage)
	if err != nil || cfg == nil || cfg.DisableAutomatedRotation {
		return err
	}
	if b.now().Before(cfg.nextRotationAt()) {
		return nil
	}
	if _, err := b.rotate(ctx, req.Storage, triggerPeriodic); err != nil {
		// Already logged, recorded in config and sent as an event; Vault would only log it again.
		return nil
	}
	return nil
}

// rotate runs the rotation protocol. inabit mints the new token and kills the old one in the same
// call, so every step is arranged to leave either a usable stored token or a loud record of why
// there is none.
func (b *backend) rotate(ctx context.Context, s logical.Storage, trigger string) (*inabitConfig, error) {
	b.mu.Lock()
	defer b.mu.Unlock()

	if err := b.persistUnsavedLocked(ctx, s); err != nil {
		return nil, &rotationError{msg: "a previously rotated login token is still not saved to storage (" + err.Error() +
			"); not rotating again until it is", err: err}
	}

	cfg, err := readConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNoConfig
	}
	client := b.clientFor(cfg)

	// Leftovers of a rotation that never finished must be understood before anything else:
	// probing them may reveal that the stored token is already dead.
	if cfg, err = b.resolveLeftoverWALs(ctx, s, cfg, client, b.now()); err != nil {
		var rerr *rotationError
		if errors.As(err, &rerr) || cfg == nil {
			return nil, err
		}
		return nil, b.recordFailure(ctx, s, cfg, trigger, &rotationError{
			msg: "an earlier rotation did not finish and its outcome is still unknown (" + err.Error() + "); not rotating until inabit can tell us", err: err})
	}

	b.crashPoint(crashBeforeWAL)
	startedAt := b.now().UTC()
	walID, err := framework.PutWAL(ctx, s, walKindRotation, &rotationWAL{OldTokenSHA256: tokenHash(cfg.LoginToken), StartedAt: startedAt})
	if err != nil {
		// Without a durable record we could not recover from a crash mid-refresh, and storage that
		// cannot take a WAL cannot take the new token either: do not call inabit.
		return nil, b.recordFailure(ctx, s, cfg, trigger, &rotationError{
			msg: fmt.Sprintf("storage is not writable (%v); inabit was not called and the login token is unchanged", err), err: err})
	}

	b.crashPoint(crashAfterWAL)
	b.loginMu.Lock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.RequestTimeout+2*time.Second)
	newToken, refreshErr := client.RefreshLoginToken(rctx, cfg.LoginToken)
	cancel()
	if refreshErr != nil {
		b.loginMu.Unlock()
		return nil, b.handleRefreshFailure(ctx, s, cfg, client, trigger, walID, startedAt, refreshErr)
	}
	b.crashPoint(crashAfterRefresh)
	newCfg, unsavedErr := b.installRotatedTokenLocked(ctx, s, cfg, newToken, walID)
	b.loginMu.Unlock()

	if unsavedErr != nil {
		b.sendEvent(ctx, eventRotateFail, "path", pathRotateRootPattern, "trigger", trigger, "error", unsavedErr.Error(), "login_token_lost", "false")
		return newCfg, unsavedErr
	}
	b.crashPoint(crashAfterPersist)
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		// Harmless: the WAL's hash no longer matches the stored token, so recovery will see the
		// rotation finished.
		b.logger.Warn("could not delete rotation WAL entry", "error", err)
	}

	// Prove the new token works and warm the cache for readers waiting behind this rotation.
	if _, err := b.accessToken(ctx, s); err != nil {
		b.logger.Warn("login token rotated, but fetching an access token with it failed", "error", err)
	}
	b.logger.Info("login token rotated", "trigger", trigger, "expires_at", formatTime(newCfg.claims().ExpiresAt))
	b.sendEvent(ctx, eventRotate, "path", pathRotateRootPattern, "trigger", trigger,
		"login_token_expires_at", formatTime(newCfg.claims().ExpiresAt))
	return newCfg, nil
}

// installRotatedTokenLocked makes the new token the one in use and persists it. If storage keeps
// failing it is held in memory (the only copy left) and saving is retried on every tick.
// Callers hold b.mu and b.loginMu.
func (b *backend) installRotatedTokenLocked(ctx context.Context, s logical.Storage, old *inabitConfig, newToken, walID string) (*inabitConfig, error) {
	now := b.now().UTC()
	cfg := old.clone()
	cfg.LoginToken = newToken
	cfg.LoginTokenStoredAt = now
	cfg.LastRotatedAt = now
	cfg.LastRotationError = ""
	cfg.LastRotationErrorAt = time.Time{}
	cfg.RotationFailures = 0

	b.stateMu.Lock()
	b.config = cfg.clone()
	b.access = nil
	b.generation++
	b.stateMu.Unlock()

	_, err := backoff.Retry(context.WithoutCancel(ctx), func() (struct{}, error) {
		return struct{}{}, putConfig(ctx, s, cfg)
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: time.Second,
	}), backoff.WithMaxTries(4))
	if err == nil {
		return cfg, nil
	}

	cfg.LastRotationError = fmt.Sprintf("the login token was rotated at %s but saving it to storage failed (%v). "+
		"The new token is held in memory on the active node and used for every read; saving is retried every minute. "+
		"Until it is saved, a restart or failover of the active node loses it.", formatTime(now), err)
	cfg.LastRotationErrorAt = now
	cfg.RotationFailures = 1
	b.stateMu.Lock()
	b.config = cfg.clone()
	b.unsaved = true
	b.unsavedWAL = walID
	b.stateMu.Unlock()
	b.logger.Error("rotated login token could not be saved; holding it in memory", "error", err)
	return cfg, &rotationError{msg: cfg.LastRotationError, err: err}
}

// persistUnsavedLocked retries saving a rotated token that storage refused earlier. Callers hold b.mu.
func (b *backend) persistUnsavedLocked(ctx context.Context, s logical.Storage) error {
	b.stateMu.Lock()
	if !b.unsaved {
		b.stateMu.Unlock()
		return nil
	}
	cfg := b.config.clone()
	walID := b.unsavedWAL
	b.stateMu.Unlock()

	cfg.LastRotationError = ""
	cfg.LastRotationErrorAt = time.Time{}
	cfg.RotationFailures = 0
	if err := putConfig(ctx, s, cfg); err != nil {
		b.logger.Error("rotated login token still not saved; holding it in memory", "error", err)
		return err
	}
	b.stateMu.Lock()
	b.config = cfg.clone()
	b.unsaved = false
	b.unsavedWAL = ""
	b.stateMu.Unlock()
	if walID != "" {
		if err := framework.DeleteWAL(ctx, s, walID); err != nil {
			b.logger.Warn("could not delete rotation WAL entry", "error", err)
		}
	}
	b.logger.Info("rotated login token saved to storage after earlier failures")
	b.sendEvent(ctx, eventRotate, "path", pathRotateRootPattern, "trigger", "retry-save",
		"login_token_expires_at", formatTime(cfg.claims().ExpiresAt))
	return nil
}

// refreshOutcome is what we can conclude after a refresh call failed.
type refreshOutcome int

const (
	refreshNotApplied refreshOutcome = iota // the old token is still valid
	refreshLost                             // the old token is dead and we never saw its successor
	refreshUnknown                          // we could not tell; the WAL stays for the next attempt
)

// probeOldToken asks inabit whether the old login token still works. inabit kills it on a
// successful refresh, so a rejection means a refresh was applied.
func (b *backend) probeOldToken(ctx context.Context, client *inabitClient, cfg *inabitConfig) (refreshOutcome, error) {
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), maxUpstreamAttempts*(cfg.RequestTimeout+2*time.Second))
	defer cancel()
	tok, err := client.AccessToken(pctx, cfg.LoginToken)
	switch {
	case err == nil:
		b.stateMu.Lock()
		if b.config != nil && b.config.LoginToken == cfg.LoginToken {
			b.access = newAccessToken(tok, b.now())
		}
		b.stateMu.Unlock()
		return refreshNotApplied, nil
	case errors.Is(err, ErrUnauthorized):
		return refreshLost, err
	default:
		return refreshUnknown, err
	}
}

func (b *backend) handleRefreshFailure(ctx context.Context, s logical.Storage, cfg *inabitConfig, client *inabitClient,
	trigger, walID string, startedAt time.Time, refreshErr error) error {
	var ue *UpstreamError
	errors.As(refreshErr, &ue)

	var outcome refreshOutcome
	var probeErr error
	switch {
	case ue != nil && !ue.Sent, errors.Is(refreshErr, ErrRateLimited):
		outcome = refreshNotApplied
	default:
		// Even a 401 is probed: an API user whose role may not refresh still has a working token,
		// and telling its operator the token is dead would send them to inabit support for nothing.
		outcome, probeErr = b.probeOldToken(ctx, client, cfg)
	}

	var rerr *rotationError
	switch outcome {
	case refreshNotApplied:
		rerr = &rotationError{msg: fmt.Sprintf("refreshing the login token failed (%v); the login token is unchanged and still valid; retrying later", refreshErr), err: refreshErr}
	case refreshLost:
		if errors.Is(refreshErr, ErrUnauthorized) {
			rerr = &rotationError{lost: true, err: refreshErr, msg: fmt.Sprintf("inabit rejected the stored login token (%v): it has expired, "+
				"been revoked, or been refreshed outside Vault. Ask inabit support for a new login token and write it to inabit/config (login_token)", refreshErr)}
		} else {
			rerr = &rotationError{lost: true, err: refreshErr, msg: lostTokenMessage(startedAt, refreshErr)}
		}
	default:
		rerr = &rotationError{msg: fmt.Sprintf("refreshing the login token failed (%v) and inabit could not be asked whether the refresh was applied (%v); "+
			"will check again before the next attempt", refreshErr, probeErr), err: refreshErr}
	}
	if outcome != refreshUnknown {
		if err := framework.DeleteWAL(ctx, s, walID); err != nil {
			b.logger.Warn("could not delete rotation WAL entry", "error", err)
		}
	}
	return b.recordFailure(ctx, s, cfg, trigger, rerr)
}

func lostTokenMessage(startedAt time.Time, cause error) string {
	msg := fmt.Sprintf("LOGIN TOKEN LOST: inabit applied the login-token refresh started at %s, but its answer (the new token) "+
		"never reached Vault storage", formatTime(startedAt))
	if cause != nil {
		msg += fmt.Sprintf(" (%v)", cause)
	}
	return msg + "; inabit has killed the stored token. Ask inabit support for a new login token and write it to inabit/config (login_token)"
}

// recordFailure stores the failure in the status fields, logs it and sends the fail event. It
// returns rerr so callers can `return b.recordFailure(...)`.
func (b *backend) recordFailure(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger string, rerr *rotationError) error {
	now := b.now().UTC()
	updated := cfg.clone()
	updated.LastRotationError = rerr.msg
	updated.LastRotationErrorAt = now
	updated.RotationFailures++
	if err := putConfig(ctx, s, updated); err != nil {
		b.logger.Error("could not record rotation failure in storage", "error", err)
	}
	b.stateMu.Lock()
	if b.config != nil && b.config.LoginToken == updated.LoginToken {
		b.config = updated.clone()
	}
	b.stateMu.Unlock()

	lost := "false"
	if rerr.lost {
		lost = "true"
		b.logger.Error("login token rotation failed and the login token is lost", "trigger", trigger, "error", rerr.msg)
	} else {
		b.logger.Error("login token rotation failed", "trigger", trigger, "failures", updated.RotationFailures,
			"next_attempt_at", formatTime(updated.nextRotationAt()), "error", rerr.msg)
	}
	b.sendEvent(ctx, eventRotateFail, "path", pathRotateRootPattern, "trigger", trigger, "error", rerr.msg, "login_token_lost", lost)
	return rerr
}

// walStaleAfter is how old a rotation WAL must be before a periodic tick settles it. This node
// holds b.mu, so the entry is not its own; it can only belong to a node that died or lost
// leadership, whose refresh gave up after request_timeout (plus our 2 s slack). Twice that, plus
// margin, and that node's call is over: settling it minutes sooner than Vault's 10-minute WAL
// rollback means a lost token is reported within a couple of ticks instead of silently failing reads.
func walStaleAfter(cfg *inabitConfig) time.Duration {
	return 2*(cfg.RequestTimeout+2*time.Second) + 30*time.Second
}

// settleStaleWALsLocked runs on every tick so that a node that died mid-rotation is noticed
// even when no rotation is due. Callers hold b.mu.
func (b *backend) settleStaleWALsLocked(ctx context.Context, s logical.Storage) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil || len(ids) == 0 {
		return
	}
	cfg, err := b.authoritativeConfig(ctx, s)
	if err != nil || cfg == nil {
		return
	}
	cutoff := b.now().Add(-walStaleAfter(cfg))
	if _, err := b.resolveLeftoverWALs(ctx, s, cfg, b.clientFor(cfg), cutoff); err != nil {
		var rerr *rotationError
		if !errors.As(err, &rerr) {
			b.logger.Warn("an unfinished rotation could not be settled yet", "error", err)
		}
	}
}

// resolveLeftoverWALs settles rotations started before cutoff that never finished (a crash, a
// failover, or a probe that could not reach inabit). Callers hold b.mu.
func (b *backend) resolveLeftoverWALs(ctx context.Context, s logical.Storage, cfg *inabitConfig, client *inabitClient, cutoff time.Time) (*inabitConfig, error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return cfg, fmt.Errorf("listing rotation WAL: %w", err)
	}
	for _, id := range ids {
		entry, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return cfg, fmt.Errorf("reading rotation WAL: %w", err)
		}
		if entry == nil || entry.Kind != walKindRotation {
			continue
		}
		w, err := decodeWAL(entry.Data)
		if err != nil {
			b.logger.Warn("dropping unreadable rotation WAL entry", "error", err)
			_ = framework.DeleteWAL(ctx, s, id)
			continue
		}
		if w.StartedAt.After(cutoff) {
			continue
		}
		resolveErr := b.resolveWALLocked(ctx, s, cfg, client, w)
		var lost *rotationError
		if resolveErr != nil && !errors.As(resolveErr, &lost) {
			return cfg, resolveErr
		}
		if err := framework.DeleteWAL(ctx, s, id); err != nil {
			b.logger.Warn("could not delete rotation WAL entry", "error", err)
		}
		if lost != nil {
			// Refreshing a token we know is dead would only bury the precise message.
			return cfg, lost
		}
		if cfg, err = readConfig(ctx, s); err != nil {
			return nil, err
		}
		if cfg == nil {
			return nil, errNoConfig
		}
	}
	return cfg, nil
}

// resolveWALLocked decides what became of one unfinished rotation. nil means nothing was lost
// and the entry can go; a *rotationError means the token is lost (already recorded) and the entry
// can go; any other error means inabit could not tell us, so the entry must stay.
func (b *backend) resolveWALLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig, client *inabitClient, w *rotationWAL) error {
	if cfg == nil || tokenHash(cfg.LoginToken) != w.OldTokenSHA256 {
		// The stored token moved on (the rotation was saved, or an operator wrote a new one).
		return nil
	}
	outcome, probeErr := b.probeOldToken(ctx, client, cfg)
	switch outcome {
	case refreshNotApplied:
		return nil
	case refreshLost:
		return b.recordFailure(ctx, s, cfg, triggerRecovery, &rotationError{lost: true, msg: lostTokenMessage(w.StartedAt, nil), err: probeErr})
	default:
		return fmt.Errorf("cannot tell whether the rotation started at %s was applied: %w", formatTime(w.StartedAt), probeErr)
	}
}

func decodeWAL(data interface{}) (*rotationWAL, error) {
	raw, err := json.Marshal(data)
	if err != nil {
		return nil, err
	}
	var w rotationWAL
	if err := json.Unmarshal(raw, &w); err != nil {
		return nil, err
	}
	if w.OldTokenSHA256 == "" {
		return nil, errors.New("rotation WAL entry has no token hash")
	}
	return &w, nil
}

// walRollback is called by Vault for WAL entries older than WALRollbackMinAge, which only a node
// that died mid-rotation leaves behind.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, data interface{}) error {
	if kind != walKindRotation {
		return nil
	}
	w, err := decodeWAL(data)
	if err != nil {
		b.logger.Warn("dropping unreadable rotation WAL entry", "error", err)
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()

	b.stateMu.Lock()
	unsaved := b.unsaved
	b.stateMu.Unlock()
	if unsaved {
		// Our own rotation whose save failed: saving it is the recovery.
		return b.persistUnsavedLocked(ctx, req.Storage)
	}
	cfg, err := readConfig(ctx, req.Storage)
	if err != nil {
		return err
	}
	if cfg == nil {
		return nil
	}
	err = b.resolveWALLocked(ctx, req.Storage, cfg, b.clientFor(cfg), w)
	var lost *rotationError
	if errors.As(err, &lost) {
		// Recorded and reported; the entry has served its purpose.
		return nil
	}
	return err
}
