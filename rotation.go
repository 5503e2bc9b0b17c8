package inabit

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// The rotation driver. inabit mints the new login token and kills the old one in one call, so
// each step leaves either a usable stored token or a loud, sticky record of why there is none.
// The decisions are internal/rotation's; the driver does the locking, storage and calls, in this
// order (in this file unless another is named):
//
//	prepareRotationLocked   save a token an earlier rotation could not save; refuse a lost token;
//	                        settle unfinished rotations (wal.go)
//	confirmTokenLocked      (ticks) a second look at a token a read saw rejected, or one not yet
//	                        proven to work
//	probeBeforeRefresh      never refresh a token inabit does not vouch for right now
//	refreshLocked           under loginMu: WAL + in-flight status, the one non-idempotent call,
//	                        the new token in use and saved, or held in memory (rotation_refresh.go)
//	verifyRotatedToken      a new token is healthy only once inabit issues an access token for it
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
	ctx, cancel := detached(ctx, maxRotationDuration)
	defer cancel()
	if trigger != triggerPeriodic {
		b.mu.Lock()
		defer b.mu.Unlock()
		cfg, err := b.prepareRotationLocked(ctx, s)
		if err != nil {
			return nil, err
		}
		return b.rotateLocked(ctx, s, cfg, trigger)
	}
	// A tick. Is a rotation due? Then wait for its turn among many mounts (herd_pace.go) without
	// the mount lock, so that rotate-root, config writes and settles never queue behind that
	// wait, and look again under the lock: meanwhile the token may have been rotated or the
	// config changed.
	cfg, reason, err := b.dueRotation(ctx, s, true)
	if cfg == nil || err != nil {
		return nil, err
	}
	release, ok := b.awaitHerdTurn(ctx, cfg, reason)
	if !ok {
		return nil, nil
	}
	if !b.mu.TryLock() {
		// An operator's request holds this mount (for minutes, against a slow url): queue for it
		// without one of the process's refresh slots, then take one only if it is free.
		release()
		b.mu.Lock()
		if release, ok = acquireRefreshSlot(ctx, 0); !ok && !cfg.urgentRotation(reason, b.now()) {
			b.mu.Unlock()
			return nil, nil
		}
	}
	defer release()
	defer b.mu.Unlock()
	if b.stopping.Load() || !b.WriteSafeReplicationState() {
		return nil, nil // Vault stopped this backend, or it stepped down, while the tick waited
	}
	if cfg, reason, err = b.dueRotationLocked(ctx, s, false); cfg == nil || err != nil {
		return nil, err
	}
	// Events say which rule caused the rotation: the period, a schedule slot, the expiry
	// deadline overriding either, or a retry.
	url := cfg.URL
	cfg, err = b.rotateLocked(ctx, s, cfg, reason)
	if p := herdPacers.get(url); err == nil && p != nil {
		p.Succeeded()
	}
	return cfg, err
}

// dueRotation is dueRotationLocked under the mount lock.
func (b *backend) dueRotation(ctx context.Context, s logical.Storage, confirm bool) (*inabitConfig, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.dueRotationLocked(ctx, s, confirm)
}

// dueRotationLocked readies the mount for a refresh (prepareRotationLocked), with confirm takes
// the tick's second look at a doubted token (confirmTokenLocked), and says which rule makes a
// rotation due now. A nil config: none is. Callers hold b.mu.
func (b *backend) dueRotationLocked(ctx context.Context, s logical.Storage, confirm bool) (*inabitConfig, string, error) {
	if confirm && b.idleTickLocked(ctx, s) {
		return nil, "", nil
	}
	cfg, err := b.prepareRotationLocked(ctx, s)
	if err != nil {
		return nil, "", err
	}
	if confirm {
		if cfg, err = b.confirmTokenLocked(ctx, s, cfg); err != nil {
			return nil, "", err
		}
	}
	next, reason := cfg.plannedRotation(b.now())
	if next.IsZero() || b.now().Before(next) {
		return nil, "", nil
	}
	return cfg, reason, nil
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

// confirmTokenLocked is the tick's second look at a token a read saw inabit reject, or one whose
// status says it is not yet proven to work: LOST within a tick or two of the first rejection,
// healthy again once inabit issues an access token with it. Callers hold b.mu.
func (b *backend) confirmTokenLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig) (*inabitConfig, error) {
	at, rejected := b.login.rejection(cfg.LoginToken)
	switch {
	case rejected && b.mono()-at < rotation.ConfirmAfter:
		return cfg, nil // a second answer a few seconds later, not the same glitch twice
	case !rejected && !cfg.ProbeBeforeRefresh:
		return cfg, nil
	}
	p, a, err := b.probe(ctx, b.clientFor(cfg), cfg)
	o, changed := rotation.ConfirmRejection(p, a, causeOf(err), rejected)
	switch {
	case !changed:
		updated, werr := b.writeStatus(ctx, s, cfg.LoginToken, func(c *inabitConfig) bool {
			if !c.ProbeBeforeRefresh || c.LoginTokenLost {
				return false
			}
			c.clearRotationStatus()
			return true
		})
		if werr != nil || updated == nil {
			return cfg, nil
		}
		return updated, nil
	case o.Kind == rotation.Unconfirmed && cfg.ProbeBeforeRefresh:
		return cfg, nil // already said; the rotation, if due, asks again
	}
	return nil, b.conclude(ctx, s, cfg, triggerConfirm, o, err)
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

// probeBeforeRefreshLocked asks inabit, right before a refresh, whether the token works, unless
// inabit issued an access token for it in this process and has not rejected it since: a dead
// token is reported lost instead of refreshed (even after a restart forgot an earlier
// rejection), and no refresh is sent while inabit cannot vouch for it.
func (b *backend) probeBeforeRefreshLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig, client inabitAPI, trigger string) error {
	if !cfg.ProbeBeforeRefresh && b.login.provenAlive(cfg.LoginToken) {
		return nil
	}
	doubt := b.doubt(cfg) // before the probe, which notes a rejection of its own
	p, a, err := b.probe(ctx, client, cfg)
	o, proceed := rotation.BeforeRefresh(p, a, causeOf(err), doubt)
	if proceed {
		return nil
	}
	return b.conclude(ctx, s, cfg, trigger, o, err)
}

// doubt is what this node holds against cfg's token before the probe that precedes a refresh.
func (b *backend) doubt(cfg *inabitConfig) rotation.Doubt {
	at, rejected := b.login.rejection(cfg.LoginToken)
	deadline := rotation.ExpiryDeadline(cfg.token(cfg.claims()), cfg.Budget())
	return rotation.Doubt{
		Rejected:    rejected,
		Confirmable: rejected && b.mono()-at >= rotation.ConfirmAfter,
		Unproven:    cfg.ProbeBeforeRefresh,
		AtDeadline:  !deadline.IsZero() && !b.now().Before(deadline),
	}
}

// verifyRotatedToken proves the new token works and warms the cache for readers waiting behind
// this rotation. A new token that is not a JWT with a future exp, or that inabit does not accept
// at once, is not reported healthy: the status says so, reads warn, and the next tick asks again
// (a rejection confirmed then is LOST). It returns that report for rotate-root's warning.
func (b *backend) verifyRotatedToken(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger string) *outcomeError {
	var problem string
	if cl, err := parseClaims(cfg.LoginToken); err != nil {
		problem = "inabit's new login token is " + err.Error()
	} else if !cl.ExpiresAt.IsZero() && !cl.ExpiresAt.After(b.now()) {
		problem = "inabit's new login token expired at " + formatTime(cl.ExpiresAt)
	}
	if _, err := b.accessToken(ctx, s); err != nil {
		if problem != "" {
			problem += "; "
		}
		problem += "fetching an access token with it failed: " + err.Error()
	}
	if problem == "" {
		return nil
	}
	var oerr *outcomeError
	errors.As(b.conclude(ctx, s, cfg, trigger, rotation.Outcome{Kind: rotation.Unconfirmed, Why: rotation.WhyVerify, Cause: problem}, nil), &oerr)
	return oerr
}
