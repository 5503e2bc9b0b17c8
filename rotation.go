package inabit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// The rotation driver. inabit mints the new login token and kills the old one in one call, so
// each step leaves either a usable stored token or a loud, sticky record of why there is none.
// The decisions are internal/rotation's; this file does the locking, storage and calls, in order:
//
//	prepareRotationLocked   save a token an earlier rotation could not save; refuse a lost token;
//	                        settle unfinished rotations (wal.go)
//	confirmTokenLocked      (ticks) a second look at a token a read saw rejected, or one not yet
//	                        proven to work
//	probeBeforeRefresh      never refresh a token inabit does not vouch for right now
//	refreshLocked           under loginMu: WAL + in-flight status, the one non-idempotent call,
//	                        the new token in use and saved (or held in memory)
//	conclude*               record what happened (rotation_outcome.go)
const (
	eventRotate     = "inabit/login-token-rotate"
	eventRotateFail = "inabit/login-token-rotate-fail"

	triggerPeriodic  = "periodic"
	triggerManual    = "rotate-root"
	triggerRetrySave = "retry-save"
	triggerSettle    = "unfinished-rotation-check"
	triggerConfirm   = "login-token-check"
)

// longestBudget is the call budget at the longest request_timeout and refresh_grace_period.
var longestBudget = rotation.Budget{RequestTimeout: maxRequestTimeout, Grace: maxRefreshGracePeriod}

// maxRotationDuration bounds a whole rotation, whoever called it.
var maxRotationDuration = longestBudget.Rotation()

// outcomeError is what a rotation returns when it did not end with a new stored token: the
// protocol's conclusion, its operator message, and whether the status is in storage.
type outcomeError struct {
	outcome rotation.Outcome
	msg     string
	err     error
	// recorded: the status is in storage (or moot: the stored token changed meanwhile).
	recorded bool
}

func (e *outcomeError) Error() string { return e.msg }
func (e *outcomeError) Unwrap() error { return e.err }

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
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
	var oerr *outcomeError
	if err == nil || errors.As(err, &oerr) || errors.Is(err, errNoConfig) {
		// Rotation failures are already logged, recorded in config and sent as events.
		return nil
	}
	return err
}

// rotate rotates now (rotate-root) or, for the periodic trigger, only when due. It returns the
// new config, or the config holding an unsaved token together with an *outcomeError saying so.
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
		if cfg, err = b.confirmTokenLocked(ctx, s, cfg); err != nil {
			return nil, err
		}
		next, reason := cfg.plannedRotation(b.now())
		if next.IsZero() || b.now().Before(next) {
			return nil, nil
		}
		// Events say which rule caused the rotation: the period, a schedule slot, the expiry
		// deadline overriding either, or a retry.
		trigger = reason
		// No herd (herd.go): wait a while for one of the process's refresh slots, or leave it to
		// the next tick; at the expiry deadline, go ahead at once, slot or not.
		wait := slotWait
		if reason == rotation.ReasonExpiry {
			wait = 0
		}
		release, ok := acquireRefreshSlot(ctx, wait)
		if !ok && reason != rotation.ReasonExpiry {
			b.logger.Debug("rotation due, but other mounts' rotations fill the process's slots; trying again next tick", "reason", reason)
			return nil, nil
		}
		defer release()
	}
	return b.rotateLocked(ctx, s, cfg, trigger)
}

// prepareRotationLocked brings the mount to where a refresh may be sent. Callers hold b.mu.
func (b *backend) prepareRotationLocked(ctx context.Context, s logical.Storage) (*inabitConfig, error) {
	if err := b.persistHeldLocked(ctx, s); err != nil {
		o := rotation.Outcome{Kind: rotation.Skipped, Why: rotation.WhySave, Cause: err.Error()}
		return nil, &outcomeError{outcome: o, msg: rotation.Message(o, b.configPath()), err: err}
	}
	cfg, err := readConfig(ctx, s)
	if err != nil {
		return nil, err
	}
	if cfg == nil {
		return nil, errNoConfig
	}
	if cfg.LoginTokenLost {
		return nil, &outcomeError{outcome: rotation.Outcome{Kind: rotation.Lost}, recorded: true, msg: cfg.LastRotationError}
	}
	return b.settleWALsLocked(ctx, s, cfg)
}

// rotateLocked is one rotation of cfg's login token. Callers hold b.mu.
func (b *backend) rotateLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger string) (*inabitConfig, error) {
	client := b.clientFor(cfg)
	if err := b.probeBeforeRefreshLocked(ctx, s, cfg, client, trigger); err != nil {
		return nil, err
	}
	r := b.refreshLocked(ctx, s, cfg, client)
	switch {
	case r.recordsErr != nil:
		// Without durable records we could not recover from a crash mid-refresh, and storage that
		// refuses them would refuse the new token too: inabit was not called.
		return nil, b.conclude(ctx, s, cfg, trigger, rotation.Outcome{Kind: rotation.Skipped, Why: rotation.WhyRecords, Cause: r.recordsErr.Error()}, r.recordsErr)
	case r.refreshErr != nil:
		return nil, b.concludeRefreshFailure(ctx, s, cfg, client, trigger, r)
	case r.saveErr != nil:
		return r.newCfg, b.concludeUnsaved(ctx, r, trigger)
	}
	b.crashPoint(crashAfterPersist)
	b.deleteWAL(ctx, s, r.walID)
	b.logger.Info("login token rotated", "trigger", trigger, "expires_at", formatTime(r.newCfg.claims().ExpiresAt))
	b.sendRotationEvent(ctx, eventRotate, trigger, "login_token_expires_at", formatTime(r.newCfg.claims().ExpiresAt))
	if oerr := b.verifyRotatedToken(ctx, s, r.newCfg, trigger); oerr != nil {
		return r.newCfg, oerr
	}
	return r.newCfg, nil
}

// refreshResult is what refreshLocked did: each error names the step that failed.
type refreshResult struct {
	walID      string
	startedAt  time.Time
	newCfg     *inabitConfig
	recordsErr error // the WAL or in-flight status could not be written: inabit was not called
	refreshErr error // the refresh did not hand us a new token
	saveErr    error // the new token is in use but storage refused it
}

// refreshLocked holds loginMu from before the WAL's start time until the new token is in use: no
// reader presents the old token while inabit is killing it, and no reader's fetch can hold the
// refresh back past the start time its WAL entry records for other nodes.
func (b *backend) refreshLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig, client inabitAPI) (r refreshResult) {
	b.loginMu.Lock()
	defer b.loginMu.Unlock()
	b.crashPoint(crashBeforeWAL)
	r.startedAt = b.now().UTC()
	if r.walID, r.recordsErr = b.writeRotationRecords(ctx, s, cfg, r.startedAt); r.recordsErr != nil {
		return r
	}
	b.crashPoint(crashAfterWAL)
	var newToken string
	if newToken, r.refreshErr = b.sendRefresh(ctx, client, cfg); r.refreshErr != nil {
		return r
	}
	b.crashPoint(crashAfterRefresh)
	r.newCfg, r.saveErr = b.installRotatedTokenLocked(ctx, s, cfg, newToken, r.walID)
	return r
}

// writeRotationRecords writes the WAL entry and the in-flight status, or neither. This node's
// clock for settling the entry starts before the entry exists, and the refresh is sent at most
// MaxRecordLatency later (on the monotonic clock), which the settle budget allows for.
func (b *backend) writeRotationRecords(ctx context.Context, s logical.Storage, cfg *inabitConfig, startedAt time.Time) (string, error) {
	monoStart := b.mono()
	walID, err := framework.PutWAL(ctx, s, walKindRotation, &rotationWAL{OldTokenSHA256: tokenHash(cfg.LoginToken), StartedAt: startedAt,
		SettleAfter: cfg.Budget().SettleAfter()})
	if err != nil {
		return "", err
	}
	b.login.walSeenAt(walID, monoStart)
	if err := b.markRefreshInFlight(ctx, s, cfg, startedAt); err != nil {
		b.deleteWAL(ctx, s, walID)
		return "", err
	}
	if took := b.mono() - monoStart; took > rotation.MaxRecordLatency {
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
	checkAt := cfg.Budget().OutcomeCheckAt(startedAt)
	cur, err := readConfig(ctx, s)
	if err != nil {
		return err
	}
	if cur == nil || cur.LoginToken != cfg.LoginToken {
		return errTokenMovedOn
	}
	cur.LastRotationError = rotation.InFlightMessage(startedAt, checkAt)
	cur.LastRotationErrorAt = startedAt
	cur.OutcomeCheckAt = checkAt
	return putConfig(ctx, s, cur)
}

// sendRefresh makes the refresh call under its own timeout.
func (b *backend) sendRefresh(ctx context.Context, client inabitAPI, cfg *inabitConfig) (string, error) {
	rctx, cancel := context.WithTimeout(ctx, cfg.Budget().Call())
	defer cancel()
	newToken, answerErrors, err := client.RefreshLoginToken(rctx, cfg.LoginToken)
	if err == nil && answerErrors != "" {
		b.logger.Warn("inabit's answer to the refresh carried the new login token and GraphQL errors; keeping the token", "errors", answerErrors)
	}
	if said := inabitSaid(err); said != "" {
		b.logger.Warn("inabit's answer to the refresh was not the new login token", "error", err, "answer_said", said)
	}
	// Surrounding whitespace is never part of a JWT, and sent back it would make every later
	// Authorization header invalid.
	return strings.TrimSpace(newToken), err
}

// saveTries is how often a rotated token's save is tried before it is held in memory; the tries
// are about 100 ms, 200 ms and 400 ms apart (±20 %, at most 1 s), while ctx lasts.
const saveTries = 4

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
	b.login.use(cfg, nil)

	// Not backoff.Retry: it waits on a timer of its own; these waits are on the backend's clock.
	wait := &backoff.ExponentialBackOff{
		InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.2, Multiplier: 2, MaxInterval: time.Second,
	}
	wait.Reset()
	err := putConfig(ctx, s, cfg)
	for try := 1; err != nil && try < saveTries; try++ {
		if err = b.sleep(ctx, wait.NextBackOff()); err != nil {
			break // ctx ended: its cause is the error
		}
		err = putConfig(ctx, s, cfg)
	}
	if err == nil {
		return cfg, nil
	}
	b.login.hold(cfg, walID)
	return cfg, err
}

// persistHeldLocked retries saving a rotated token that storage refused earlier. Callers hold
// b.mu and pass a context detached from any caller.
func (b *backend) persistHeldLocked(ctx context.Context, s logical.Storage) error {
	cfg, walID, ok := b.login.held()
	if !ok {
		return nil
	}
	cfg.clearRotationStatus()
	if err := putConfig(ctx, s, cfg); err != nil {
		b.logger.Error("rotated login token still not saved; holding it in memory", "error", err)
		return err
	}
	b.login.saved(cfg)
	b.deleteWAL(ctx, s, walID)
	b.logger.Info("rotated login token saved to storage after earlier failures")
	b.sendRotationEvent(ctx, eventRotate, triggerRetrySave, "login_token_expires_at", formatTime(cfg.claims().ExpiresAt))
	// Saved with a clean status: it is healthy only once inabit accepts it.
	b.verifyRotatedToken(ctx, s, cfg, triggerRetrySave)
	return nil
}

func (b *backend) deleteWAL(ctx context.Context, s logical.Storage, walID string) {
	if walID == "" {
		return
	}
	b.login.forgetWAL(walID)
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
