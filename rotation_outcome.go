package inabit

import (
	"context"
	"errors"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// The driver's probes and conclusions: each asks internal/rotation what an answer means, then
// records it (status, log, event) the one way every outcome is recorded.

// answerOf reads a call's error as the protocol's Answer, with inabit's Retry-After.
func answerOf(err error) (rotation.Answer, time.Duration) {
	if err == nil {
		return rotation.Succeeded, 0
	}
	var ue *inabitapi.Error
	switch {
	case !errors.As(err, &ue):
		return rotation.NoAnswer, 0 // not the client's own error: assume the worst
	case !ue.Sent:
		return rotation.NotSent, 0
	case ue.MayStillApply():
		return rotation.NoAnswer, 0
	case errors.Is(ue, inabitapi.ErrUnauthorized):
		return rotation.Rejected, 0
	case errors.Is(ue, inabitapi.ErrRateLimited):
		return rotation.Declined, ue.RetryAfter
	case errors.Is(ue, inabitapi.ErrRefused):
		return rotation.Declined, 0
	default:
		return rotation.Failed, 0
	}
}

func causeOf(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// probe asks inabit whether cfg's login token works by fetching an access token with it. Only
// call it when no refresh with that token can still be running: an early "alive" would be
// overtaken by a late refresh.
func (b *backend) probe(ctx context.Context, client inabitAPI, cfg *inabitConfig) (rotation.Probe, rotation.Answer, error) {
	pctx, cancel := context.WithTimeout(ctx, cfg.Budget().Probe())
	defer cancel()
	start, startMono := b.now(), b.mono()
	tok, err := client.AccessToken(pctx, cfg.LoginToken)
	a, _ := answerOf(err)
	p := rotation.ProbeResult(a)
	switch p {
	case rotation.Alive:
		b.login.noteAlive(cfg.LoginToken)
		_, gen := b.login.cachedAccess()
		b.login.cacheAccess(gen, cfg.LoginToken, newAccessToken(tok, start, startMono))
	case rotation.Dead:
		// Remembered as a read's rejection is: one answer is not LOST; the tick asks again at
		// least ConfirmAfter later, and records LOST then (also once storage works again).
		b.login.noteRejected(cfg.LoginToken, b.mono())
	}
	return p, a, err
}

// concludeRefreshFailure decides what a failed refresh means for the login token.
func (b *backend) concludeRefreshFailure(ctx context.Context, s logical.Storage, cfg *inabitConfig, client inabitAPI, trigger string, r refreshResult) error {
	a, retryAfter := answerOf(r.refreshErr)
	o, probe := rotation.AfterRefresh(a, causeOf(r.refreshErr), retryAfter, r.startedAt, b.now(), cfg.Budget())
	if !probe {
		if o.Kind != rotation.Pending {
			b.deleteWAL(ctx, s, r.walID) // it never reached inabit, or inabit declined it
		}
		// Pending: inabit may be applying the refresh right now. The WAL entry stays and nothing
		// is asked or sent until it is settled.
		return b.conclude(ctx, s, cfg, trigger, o, r.refreshErr)
	}
	// inabit answered with an error, so the call is over and the old token can be asked now.
	if a == rotation.Rejected {
		// inabit's own word on the refresh, remembered like a read's: no refresh is sent with this
		// token again unless inabit issues an access token with it first.
		b.login.noteRejected(cfg.LoginToken, b.mono())
	}
	p, _, probeErr := b.probe(ctx, client, cfg)
	o = rotation.AfterRefreshProbe(o, p)
	if o.Kind == rotation.Lost {
		return b.concludeLost(ctx, s, cfg, trigger, r.walID, o, r.refreshErr)
	}
	b.deleteWAL(ctx, s, r.walID)
	if o.Kind == rotation.Unconfirmed && probeErr != nil {
		o.Cause += "; asking whether the login token still works: " + probeErr.Error()
	}
	return b.conclude(ctx, s, cfg, trigger, o, r.refreshErr)
}

// concludeUnsaved reports a rotated token that storage refused. It is held in memory on this
// node and used for every read, unless this node is no longer the active one: then it is gone
// with the node, and the answer says so instead of promising what cannot be kept.
func (b *backend) concludeUnsaved(ctx context.Context, r refreshResult, trigger string) error {
	o := rotation.Outcome{Kind: rotation.Held, Why: rotation.WhySave, Cause: r.saveErr.Error(), StartedAt: r.newCfg.LastRotatedAt}
	if b.stopping.Load() || !b.WriteSafeReplicationState() || errors.Is(r.saveErr, logical.ErrReadOnly) {
		o.Kind = rotation.Dropped
	}
	msg := rotation.Message(o, b.configPath())
	r.newCfg.Status.Apply(o, msg, b.now())
	b.login.updateHeld(r.newCfg)
	b.logger.Error("rotated login token could not be saved", "held_in_memory", o.Kind == rotation.Held, "error", r.saveErr)
	b.sendRotationEvent(ctx, eventRotateFail, trigger, "error", msg, "login_token_lost", "false")
	return &outcomeError{outcome: o, msg: msg, err: r.saveErr}
}

// errTokenMovedOn: the stored login token changed since the rotation read it.
var errTokenMovedOn = errors.New("the stored login token changed since this rotation read it")

// concludeLost records a lost token, and only then drops the WAL entry: until LOST is in
// storage, the entry is what makes the next tick find out again.
func (b *backend) concludeLost(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger, walID string, o rotation.Outcome, cause error) error {
	err := b.conclude(ctx, s, cfg, trigger, o, cause)
	if oerr := (*outcomeError)(nil); errors.As(err, &oerr) && oerr.recorded {
		b.deleteWAL(ctx, s, walID)
	}
	return err
}

// conclude records a failed outcome in the status fields, logs it and sends the fail event; it
// returns the *outcomeError callers return.
func (b *backend) conclude(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger string, o rotation.Outcome, cause error) error {
	now := b.now().UTC()
	msg := rotation.Message(o, b.configPath())
	oerr := &outcomeError{outcome: o, msg: msg, err: cause}
	updated, err := b.writeStatus(ctx, s, cfg.LoginToken, func(c *inabitConfig) bool { return c.Status.Apply(o, msg, now) })
	oerr.recorded = err == nil || errors.Is(err, errTokenMovedOn)
	switch {
	case errors.Is(err, errTokenMovedOn):
		b.logger.Warn("rotation status not recorded: the stored login token changed meanwhile", "trigger", trigger, "error", msg)
		return oerr
	case err != nil:
		// Storage refused it, but this node still says it: reads warn from the cached config.
		b.logger.Error("could not record rotation failure in storage", "error", err)
		updated = cfg.clone()
		updated.Status.Apply(o, msg, now)
		b.login.statusWritten(updated)
	}
	if o.Kind == rotation.Lost {
		b.logger.Error("login token rotation failed and the login token is lost", "trigger", trigger, "error", msg)
	} else {
		b.logger.Error("login token rotation failed", "trigger", trigger, "failures", updated.RotationFailures,
			"next_attempt_at", formatTime(updated.nextRotationAt(now)), "error", msg)
	}
	b.sendRotationEvent(ctx, eventRotateFail, trigger, "error", msg, "login_token_lost", o.EventLost())
	return oerr
}

// sendRotationEvent names the path only for rotations an operator asked for; ticks have none.
func (b *backend) sendRotationEvent(ctx context.Context, eventType, trigger string, metadata ...string) {
	md := []string{"trigger", trigger}
	if trigger == triggerManual {
		md = append(md, "path", pathRotateRootPattern)
	}
	b.sendEvent(ctx, eventType, append(md, metadata...)...)
}

// writeStatus applies update to the stored config, but only while it still holds loginToken: a
// status worked out for one token must never be written over a newer one (another node may have
// rotated, or an operator written a token, since this rotation read the config). Vault storage
// has no compare-and-swap, so this re-reads right before each write and retries a failed write.
// update returns false when there is nothing to write.
func (b *backend) writeStatus(ctx context.Context, s logical.Storage, loginToken string, update func(*inabitConfig) bool) (*inabitConfig, error) {
	var lastErr error
	for attempt := 0; attempt < 3; attempt++ {
		cur, err := readConfig(ctx, s)
		if err != nil {
			lastErr = err
			continue
		}
		if cur == nil || cur.LoginToken != loginToken {
			return nil, errTokenMovedOn
		}
		if !update(cur) {
			return cur, nil
		}
		if err := putConfig(ctx, s, cur); err != nil {
			lastErr = err
			continue
		}
		b.login.statusWritten(cur)
		return cur, nil
	}
	return nil, lastErr
}
