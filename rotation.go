package inabit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

// The rotation protocol. inabit mints the new login token and kills the old one in one call, so
// each step below leaves either a usable stored token or a loud, sticky record of why there is none:
//
//	prepareRotationLocked  save a token an earlier rotation could not save; refuse a lost token;
//	                       settle unfinished rotations (wal.go)
//	confirmNotRejected     probe, never refresh, a token inabit has rejected
//	PutWAL                 record that a refresh may be in flight, or do not call inabit at all
//	sendRefresh            the one non-idempotent call, never retried
//	keepRotatedToken       use the new token at once, save it (or hold it in memory), drop the WAL
//	handleRefreshFailure   decide from inabit's own answer, or wait out refresh_grace_period
const (
	eventRotate     = "inabit/login-token-rotate"
	eventRotateFail = "inabit/login-token-rotate-fail"

	triggerPeriodic  = "periodic"
	triggerManual    = "rotate-root"
	triggerRetrySave = "retry-save"
	triggerSettle    = "unfinished-rotation-check"

	// storageBound bounds the storage work that follows a refresh: the save and its retries, the
	// WAL delete, the status write and the events.
	storageBound = 30 * time.Second
	// maxRotationDuration bounds a whole rotation, whoever called it: the refresh, a probe with
	// its retries, and the storage work, at the longest request_timeout.
	maxRotationDuration = (1+inabitapi.MaxAttempts)*(maxRequestTimeout+inabitapi.CallSlack) + storageBound
)

// rotationError is what a rotation returns when it did not end with a new stored token. Its kind
// decides how loud callers are and which HTTP status rotate-root answers with.
type rotationError struct {
	msg string
	// lost: the stored login token is dead (sticky until an operator writes a new one).
	lost bool
	// pending: a refresh's outcome is unknown until its WAL entry is old enough to settle.
	pending bool
	checkAt time.Time
	err     error
	// recorded: the status is in storage (or moot: the stored token changed meanwhile).
	recorded bool
	// retryNotBefore: inabit's Retry-After. probeFirst: inabit rejected the token and could not
	// be asked again, so the next attempt probes before it refreshes, even after a restart.
	retryNotBefore time.Time
	probeFirst     bool
}

func (e *rotationError) Error() string { return e.msg }
func (e *rotationError) Unwrap() error { return e.err }

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// rotationRetryDelay is how long periodic rotation waits after the n-th consecutive failure:
// 1m, 2m, 4m … capped at 1h.
func rotationRetryDelay(failures int) time.Duration {
	eb := &backoff.ExponentialBackOff{InitialInterval: time.Minute, RandomizationFactor: 0, Multiplier: 2, MaxInterval: time.Hour}
	eb.Reset()
	var d time.Duration
	for i := 0; i < failures && i < 64; i++ {
		d = eb.NextBackOff()
	}
	return d
}

// detached is ctx without its cancellation or deadline, bounded by its own timeout. A caller that
// hangs up (Ctrl-C, the CLI's timeout, max_request_duration, the tick's 90 s) must not make
// healthy storage refuse a token inabit has already minted.
func detached(ctx context.Context, bound time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), bound)
}

// periodicFunc runs on the active node about once a minute.
func (b *backend) periodicFunc(ctx context.Context, req *logical.Request) error {
	if !b.WriteSafeReplicationState() {
		return nil
	}
	_, err := b.rotate(ctx, req.Storage, triggerPeriodic)
	var rerr *rotationError
	if err == nil || errors.As(err, &rerr) || errors.Is(err, errNoConfig) {
		// Rotation failures are already logged, recorded in config and sent as events.
		return nil
	}
	return err
}

// rotate rotates now (rotate-root) or, for the periodic trigger, only when due. It returns the
// new config, or the config holding an unsaved token together with a *rotationError saying so.
func (b *backend) rotate(ctx context.Context, s logical.Storage, trigger string) (*inabitConfig, error) {
	if !b.WriteSafeReplicationState() {
		return nil, logical.ErrReadOnly
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx, cancel := detached(ctx, maxRotationDuration)
	defer cancel()

	cfg, err := b.prepareRotationLocked(ctx, s)
	if err != nil {
		return nil, err
	}
	if trigger == triggerPeriodic {
		next, reason := cfg.plannedRotation(b.now())
		if next.IsZero() || b.now().Before(next) {
			return nil, nil
		}
		// Events say which rule caused the rotation: the period, a schedule slot, the expiry
		// deadline overriding either, or a retry.
		trigger = reason
	}
	return b.rotateLocked(ctx, s, cfg, trigger)
}

// prepareRotationLocked brings the mount to where a refresh may be sent. Callers hold b.mu.
func (b *backend) prepareRotationLocked(ctx context.Context, s logical.Storage) (*inabitConfig, error) {
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
	if cfg.LoginTokenLost {
		return nil, &rotationError{lost: true, recorded: true, msg: cfg.LastRotationError}
	}
	return b.settleWALsLocked(ctx, s, cfg)
}

func (b *backend) rotateLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger string) (*inabitConfig, error) {
	client := b.clientFor(cfg)
	if err := b.confirmNotRejectedLocked(ctx, s, cfg, client, trigger); err != nil {
		return nil, err
	}

	var (
		walID                  string
		startedAt              time.Time
		newCfg                 *inabitConfig
		refreshErr, unsavedErr error
	)
	setupErr := func() error {
		// loginMu is write-held from before the WAL's start time until the new token is in use:
		// no reader presents the old token while inabit is killing it, and no reader's fetch can
		// hold the refresh back past the start time its WAL entry records for other nodes.
		b.loginMu.Lock()
		defer b.loginMu.Unlock()
		b.crashPoint(crashBeforeWAL)
		startedAt = b.now().UTC()
		var err error
		if walID, err = b.writeRotationRecords(ctx, s, cfg, startedAt); err != nil {
			return err
		}
		b.crashPoint(crashAfterWAL)
		var newToken string
		if newToken, refreshErr = b.sendRefresh(ctx, client, cfg); refreshErr != nil {
			return nil
		}
		b.crashPoint(crashAfterRefresh)
		newCfg, unsavedErr = b.installRotatedTokenLocked(ctx, s, cfg, newToken, walID)
		return nil
	}()
	if setupErr != nil {
		// Without durable records we could not recover from a crash mid-refresh, and storage that
		// refuses them would refuse the new token too: inabit was not called.
		return nil, b.recordFailure(ctx, s, cfg, trigger, &rotationError{err: setupErr,
			msg: fmt.Sprintf("storage is not writable (%v); inabit was not called and the login token is unchanged", setupErr)})
	}
	if refreshErr != nil {
		return nil, b.handleRefreshFailure(ctx, s, cfg, client, trigger, walID, startedAt, refreshErr)
	}
	if unsavedErr != nil {
		b.sendRotationEvent(ctx, eventRotateFail, trigger, "error", unsavedErr.Error(), "login_token_lost", "false")
		return newCfg, unsavedErr
	}
	b.crashPoint(crashAfterPersist)
	b.deleteWAL(ctx, s, walID)

	// Prove the new token works and warm the cache for readers waiting behind this rotation.
	if _, err := b.accessToken(ctx, s); err != nil {
		b.logger.Warn("login token rotated, but fetching an access token with it failed", "error", err)
	}
	b.logger.Info("login token rotated", "trigger", trigger, "expires_at", formatTime(newCfg.claims().ExpiresAt))
	b.sendRotationEvent(ctx, eventRotate, trigger, "login_token_expires_at", formatTime(newCfg.claims().ExpiresAt))
	return newCfg, nil
}

// maxRecordLatency bounds how long the WAL and in-flight writes may take before the refresh is
// sent: other nodes time the refresh from the WAL's start time.
const maxRecordLatency = 10 * time.Second

// writeRotationRecords writes the WAL entry and the in-flight status, or neither.
func (b *backend) writeRotationRecords(ctx context.Context, s logical.Storage, cfg *inabitConfig, startedAt time.Time) (string, error) {
	walID, err := framework.PutWAL(ctx, s, walKindRotation, &rotationWAL{OldTokenSHA256: tokenHash(cfg.LoginToken), StartedAt: startedAt})
	if err != nil {
		return "", err
	}
	b.noteWALSeen(walID, startedAt)
	if err := b.markRefreshInFlight(ctx, s, cfg, startedAt); err != nil {
		b.deleteWAL(ctx, s, walID)
		return "", err
	}
	if took := b.now().Sub(startedAt); took > maxRecordLatency {
		b.deleteWAL(ctx, s, walID)
		return "", fmt.Errorf("writing the rotation records took %s", took.Round(time.Second))
	}
	return walID, nil
}

// markRefreshInFlight writes, before the refresh is sent, the status that must stand if this
// node dies before inabit's answer is saved: the outcome is then unknown until the WAL entry is
// settled. A successful rotation or a recorded failure replaces it. Only storage is written: the
// cached config, which token reads warn from, keeps its healthy status while the call runs.
func (b *backend) markRefreshInFlight(ctx context.Context, s logical.Storage, cfg *inabitConfig, startedAt time.Time) error {
	checkAt := cfg.outcomeCheckAt(startedAt)
	cur, err := readConfig(ctx, s)
	if err != nil {
		return err
	}
	if cur == nil || cur.LoginToken != cfg.LoginToken {
		return errTokenMovedOn
	}
	cur.LastRotationError = fmt.Sprintf("a login-token refresh started at %s; if this status stays, Vault stopped before inabit's answer was saved: "+
		"outcome unknown, checked again at %s", formatTime(startedAt), formatTime(checkAt))
	cur.LastRotationErrorAt = startedAt
	cur.OutcomeCheckAt = checkAt
	return putConfig(ctx, s, cur)
}

// confirmNotRejectedLocked probes, and never refreshes, a login token inabit has rejected on this
// node: refreshing a dead token would bury what happened under a new error every minute.
func (b *backend) confirmNotRejectedLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig, client inabitAPI, trigger string) error {
	b.stateMu.Lock()
	rejected := cfg.ProbeBeforeRefresh || (b.rejectedToken != "" && b.rejectedToken == tokenHash(cfg.LoginToken))
	b.stateMu.Unlock()
	if !rejected {
		return nil
	}
	switch outcome, err := b.probeOldToken(ctx, client, cfg); outcome {
	case tokenAlive:
		return nil
	case tokenDead:
		return b.recordFailure(ctx, s, cfg, trigger, rejectedTokenError(err, b.configPath()))
	default:
		return b.recordFailure(ctx, s, cfg, trigger, &rotationError{err: err, probeFirst: true, msg: fmt.Sprintf(
			"inabit rejected the stored login token on an earlier call and cannot be asked now whether it still works (%v); not refreshing until it can", err)})
	}
}

// sendRefresh makes the refresh call under its own timeout.
func (b *backend) sendRefresh(ctx context.Context, client inabitAPI, cfg *inabitConfig) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout+inabitapi.CallSlack)
	defer cancel()
	newToken, answerErrors, err := client.RefreshLoginToken(rctx, cfg.LoginToken)
	if err == nil && answerErrors != "" {
		b.logger.Warn("inabit's answer to the refresh carried the new login token and GraphQL errors; keeping the token", "errors", answerErrors)
	}
	return newToken, err
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
	cfg.clearRotationStatus()

	b.stateMu.Lock()
	b.config = cfg.clone()
	b.access = nil
	b.generation++
	b.stateMu.Unlock()

	var retry backoff.BackOff = &backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: time.Second,
	}
	if b.noRetryWait {
		retry = &backoff.ZeroBackOff{}
	}
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		return struct{}{}, putConfig(ctx, s, cfg)
	}, backoff.WithBackOff(retry), backoff.WithMaxTries(4))
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

// persistUnsavedLocked retries saving a rotated token that storage refused earlier. Callers hold
// b.mu and pass a context detached from any caller.
func (b *backend) persistUnsavedLocked(ctx context.Context, s logical.Storage) error {
	b.stateMu.Lock()
	if !b.unsaved {
		b.stateMu.Unlock()
		return nil
	}
	cfg := b.config.clone()
	walID := b.unsavedWAL
	b.stateMu.Unlock()

	cfg.clearRotationStatus()
	if err := putConfig(ctx, s, cfg); err != nil {
		b.logger.Error("rotated login token still not saved; holding it in memory", "error", err)
		return err
	}
	b.markSaved(cfg)
	b.deleteWAL(ctx, s, walID)
	b.logger.Info("rotated login token saved to storage after earlier failures")
	b.sendRotationEvent(ctx, eventRotate, triggerRetrySave, "login_token_expires_at", formatTime(cfg.claims().ExpiresAt))
	return nil
}

// markSaved records that cfg, holding the once-unsaved token, is now in storage.
func (b *backend) markSaved(cfg *inabitConfig) {
	b.stateMu.Lock()
	b.config = cfg.clone()
	b.unsaved = false
	b.unsavedWAL = ""
	b.stateMu.Unlock()
}

func (b *backend) deleteWAL(ctx context.Context, s logical.Storage, walID string) {
	if walID == "" {
		return
	}
	b.forgetWAL(walID)
	if err := framework.DeleteWAL(ctx, s, walID); err != nil {
		// Harmless: an entry whose hash no longer matches the stored token is dropped by the next
		// check, and one that still matches is settled by probing.
		b.logger.Warn("could not delete rotation WAL entry", "error", err)
	}
}

// sendRotationEvent names the path only for rotations an operator asked for; ticks have none.
func (b *backend) sendRotationEvent(ctx context.Context, eventType, trigger string, metadata ...string) {
	md := []string{"trigger", trigger}
	if trigger == triggerManual {
		md = append(md, "path", pathRotateRootPattern)
	}
	b.sendEvent(ctx, eventType, append(md, metadata...)...)
}
