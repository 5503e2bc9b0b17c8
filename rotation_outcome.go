package inabit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

// What a rotation concludes when the refresh did not hand us a new token, and how the conclusion
// is recorded. Only inabit's own answer decides anything at once; an answer that never came
// leaves inabit free to apply the refresh later, so it is settled only after refresh_grace_period.

// tokenState is what a probe of the old login token found.
type tokenState int

const (
	tokenAlive   tokenState = iota // inabit issued an access token with it
	tokenDead                      // inabit itself rejected it (GraphQL UNAUTHENTICATED or an API 401)
	tokenUnknown                   // no answer of inabit's own: unreachable, a proxy's page, garbage
)

// probeOldToken asks inabit whether a login token still works. Only call it when no refresh with
// that token can still be running: an early "alive" would be overtaken by a late refresh.
func (b *backend) probeOldToken(ctx context.Context, client inabitAPI, cfg *inabitConfig) (tokenState, error) {
	pctx, cancel := context.WithTimeout(ctx, inabitapi.MaxAttempts*(cfg.RequestTimeout+inabitapi.CallSlack))
	defer cancel()
	start := b.now()
	tok, err := client.AccessToken(pctx, cfg.LoginToken)
	switch {
	case err == nil:
		b.stateMu.Lock()
		if b.config != nil && b.config.LoginToken == cfg.LoginToken {
			b.access = newAccessToken(tok, start)
		}
		if b.rejectedToken == tokenHash(cfg.LoginToken) {
			b.rejectedToken = ""
		}
		b.stateMu.Unlock()
		return tokenAlive, nil
	case errors.Is(err, inabitapi.ErrUnauthorized):
		b.noteRejected(cfg.LoginToken)
		return tokenDead, err
	default:
		return tokenUnknown, err
	}
}

// noteRejected remembers that inabit itself rejected tok, so no refresh is ever sent with it.
func (b *backend) noteRejected(tok string) {
	b.stateMu.Lock()
	b.rejectedToken = tokenHash(tok)
	b.stateMu.Unlock()
}

// handleRefreshFailure decides what a failed refresh means for the login token.
func (b *backend) handleRefreshFailure(ctx context.Context, s logical.Storage, cfg *inabitConfig, client inabitAPI,
	trigger, walID string, startedAt time.Time, refreshErr error) error {
	var ue *inabitapi.Error
	if !errors.As(refreshErr, &ue) || ue.MayStillApply() {
		// No answer of inabit's own: it may be applying the refresh right now. The WAL entry stays
		// and nothing is asked or sent until refresh_grace_period has passed.
		return b.recordFailure(ctx, s, cfg, trigger, outcomeUnknownError(cfg, startedAt, refreshErr))
	}
	if !ue.Sent || errors.Is(ue, inabitapi.ErrRateLimited) || errors.Is(ue, inabitapi.ErrRefused) {
		// It never reached inabit, or inabit declined before touching the token.
		b.deleteWAL(ctx, s, walID)
		rerr := unchangedError(refreshErr)
		if ue.RetryAfter > 0 {
			rerr.retryNotBefore = b.now().Add(ue.RetryAfter).UTC() // inabit said when to come back
		}
		return b.recordFailure(ctx, s, cfg, trigger, rerr)
	}
	// inabit answered with an error, so the call is over and the old token can be asked now.
	switch state, probeErr := b.probeOldToken(ctx, client, cfg); state {
	case tokenAlive:
		b.deleteWAL(ctx, s, walID)
		return b.recordFailure(ctx, s, cfg, trigger, unchangedError(refreshErr))
	case tokenDead:
		if errors.Is(refreshErr, inabitapi.ErrUnauthorized) {
			return b.recordLost(ctx, s, cfg, trigger, walID, rejectedTokenError(refreshErr, b.configPath()))
		}
		return b.recordLost(ctx, s, cfg, trigger, walID, &rotationError{lost: true, err: refreshErr, msg: lostTokenMessage(startedAt, refreshErr, b.configPath())})
	default:
		// Our refresh is settled (inabit answered it), but whether the token works is not.
		b.deleteWAL(ctx, s, walID)
		if errors.Is(refreshErr, inabitapi.ErrUnauthorized) {
			b.noteRejected(cfg.LoginToken)
		}
		return b.recordFailure(ctx, s, cfg, trigger, &rotationError{err: refreshErr, probeFirst: errors.Is(refreshErr, inabitapi.ErrUnauthorized), msg: fmt.Sprintf(
			"refreshing the login token failed (%v) and inabit could not be asked whether the login token still works (%v); "+
				"no refresh is sent with it until inabit confirms it works", refreshErr, probeErr)})
	}
}

func unchangedError(cause error) *rotationError {
	return &rotationError{err: cause, msg: fmt.Sprintf("refreshing the login token failed (%v); the login token is unchanged and still valid; retrying later", cause)}
}

func outcomeUnknownError(cfg *inabitConfig, startedAt time.Time, cause error) *rotationError {
	checkAt := cfg.outcomeCheckAt(startedAt)
	return &rotationError{pending: true, checkAt: checkAt, err: cause, msg: fmt.Sprintf(
		"the login-token refresh started at %s got no answer from inabit itself (%v): inabit may still apply it: outcome unknown, "+
			"checked again at %s. No refresh is sent until then and the stored login token stays in use; "+
			"if inabit did apply the refresh, the login token is reported lost then", formatTime(startedAt), cause, formatTime(checkAt))}
}

func rejectedTokenError(cause error, configPath string) *rotationError {
	return &rotationError{lost: true, err: cause, msg: fmt.Sprintf("LOGIN TOKEN LOST: inabit rejected the stored login token (%v): it has expired, "+
		"been revoked, or been refreshed outside Vault. No refresh is sent with it again. "+
		"Ask inabit support for a new login token and write it to %s (login_token)", cause, configPath)}
}

func lostTokenMessage(startedAt time.Time, cause error, configPath string) string {
	msg := fmt.Sprintf("LOGIN TOKEN LOST: inabit applied the login-token refresh started at %s, but its answer (the new token) "+
		"never reached Vault storage", formatTime(startedAt))
	if cause != nil {
		msg += fmt.Sprintf(" (%v)", cause)
	}
	return msg + "; inabit has killed the stored token. Ask inabit support for a new login token and write it to " + configPath + " (login_token)"
}

// errTokenMovedOn: the stored login token changed since the rotation read it.
var errTokenMovedOn = errors.New("the stored login token changed since this rotation read it")

// recordLost records a lost token, and only then drops the WAL entry: until LOST is in storage,
// the entry is what makes the next tick find out again.
func (b *backend) recordLost(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger, walID string, rerr *rotationError) error {
	err := b.recordFailure(ctx, s, cfg, trigger, rerr)
	if rerr.recorded {
		b.deleteWAL(ctx, s, walID)
	}
	return err
}

// recordFailure stores the failure in the status fields, logs it and sends the fail event. It
// returns rerr so callers can `return b.recordFailure(...)`.
func (b *backend) recordFailure(ctx context.Context, s logical.Storage, cfg *inabitConfig, trigger string, rerr *rotationError) error {
	now := b.now().UTC()
	updated, err := b.writeStatus(ctx, s, cfg.LoginToken, func(c *inabitConfig) bool {
		if c.LoginTokenLost && !rerr.lost {
			return false // LOST is sticky: nothing but a new login token replaces it
		}
		applyFailureStatus(c, rerr, now)
		return true
	})
	rerr.recorded = err == nil || errors.Is(err, errTokenMovedOn)
	switch {
	case errors.Is(err, errTokenMovedOn):
		b.logger.Warn("rotation status not recorded: the stored login token changed meanwhile", "trigger", trigger, "error", rerr.msg)
		return rerr
	case err != nil:
		// Storage refused it, but this node still says it: reads warn from the cached config.
		b.logger.Error("could not record rotation failure in storage", "error", err)
		updated = cfg.clone()
		applyFailureStatus(updated, rerr, now)
		b.stateMu.Lock()
		if !b.unsaved && b.config != nil && b.config.LoginToken == cfg.LoginToken {
			b.config = updated.clone()
		}
		b.stateMu.Unlock()
	}

	lost := "false"
	if rerr.lost {
		lost = "true"
		b.logger.Error("login token rotation failed and the login token is lost", "trigger", trigger, "error", rerr.msg)
	} else {
		b.logger.Error("login token rotation failed", "trigger", trigger, "failures", updated.RotationFailures,
			"next_attempt_at", formatTime(updated.nextRotationAt(now)), "error", rerr.msg)
	}
	b.sendRotationEvent(ctx, eventRotateFail, trigger, "error", rerr.msg, "login_token_lost", lost)
	return rerr
}

func applyFailureStatus(c *inabitConfig, rerr *rotationError, now time.Time) {
	c.LastRotationError = rerr.msg
	c.LastRotationErrorAt = now
	c.RotationFailures++
	c.LoginTokenLost = rerr.lost
	c.OutcomeCheckAt = rerr.checkAt
	c.RetryNotBefore = rerr.retryNotBefore
	c.ProbeBeforeRefresh = c.ProbeBeforeRefresh || rerr.probeFirst
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
		b.stateMu.Lock()
		if !b.unsaved && (b.config == nil || b.config.LoginToken == loginToken) {
			b.config = cur.clone()
		}
		b.stateMu.Unlock()
		return cur, nil
	}
	return nil, lastErr
}
