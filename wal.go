package inabit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// Unfinished rotations. A WAL entry is written before every refresh and deleted once its outcome
// is known. An entry may belong to this node's refresh whose answer never came, or to another
// node that died or stepped down mid-refresh; either way inabit may still be applying that
// refresh, so an entry is settled (by probing the old token) only once this node has known of it
// for the settle wait (rotation.Budget.SettleAfter) on its monotonic clock, and until then no new
// refresh is sent.

const walKindRotation = "login-token-rotation"

// defaultWALRollbackMinAge keeps Vault's own WAL rollback away from entries the periodic tick is
// still waiting on (the longest settle wait plus a rotation); it is only a backstop.
var defaultWALRollbackMinAge = longestBudget.SettleAfter() + longestBudget.Rotation() + 10*time.Minute

// rotationWAL records that a refresh may be in flight. It holds no secret: a hash is enough to
// tell whether the stored token moved on, and the old token itself is still in config.
type rotationWAL struct {
	OldTokenSHA256 string    `json:"old_token_sha256"`
	StartedAt      time.Time `json:"started_at"`
	// SettleAfter is the settle wait under the budget the refresh was sent with (absent in
	// entries of v0.2.0 and older): an operator lowering request_timeout or
	// refresh_grace_period on another node never shortens it.
	SettleAfter time.Duration `json:"settle_after,omitempty"`
}

// settleWALsLocked settles every unfinished rotation of the stored token that is old enough, and
// returns a Pending *outcomeError while any is still too young. It returns the config to rotate
// from. Callers hold b.mu and pass a detached context.
func (b *backend) settleWALsLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig) (*inabitConfig, error) {
	listedAt := b.mono()
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("listing rotation WAL entries: %w", err)
	}
	if len(ids) == 0 {
		b.login.sawNoWALs(listedAt)
	}
	var pending error
	unsettled := false // a WAL entry of the stored token was found
	for _, id := range ids {
		entry, err := framework.GetWAL(ctx, s, id)
		if err != nil {
			return nil, fmt.Errorf("reading rotation WAL entry: %w", err)
		}
		if entry == nil || entry.Kind != walKindRotation {
			continue
		}
		w, err := decodeWAL(entry.Data)
		if err != nil {
			b.logger.Warn("dropping unreadable rotation WAL entry", "error", err)
			b.deleteWAL(ctx, s, id)
			continue
		}
		if w.OldTokenSHA256 != tokenHash(cfg.LoginToken) {
			// The stored token moved on (the rotation was saved, or an operator wrote a new one).
			b.deleteWAL(ctx, s, id)
			continue
		}
		unsettled = true
		// Timed on this node's monotonic clock from when it first saw the entry: no wall-clock
		// step here and no skew of the writer's clock can make it settle early.
		seen := b.login.walSeenAt(id, b.mono())
		if due, wait := rotation.SettleDue(b.mono()-seen, cfg.Budget(), w.SettleAfter); !due {
			if b.expiredAndDead(ctx, cfg) {
				// A node that restarts more often than the wait would never settle; once the
				// token is past its exp and inabit rejects it, no late refresh can change that.
				return nil, b.concludeLost(ctx, s, cfg, triggerSettle, id,
					rotation.Outcome{Kind: rotation.Lost, Why: rotation.WhySettle, StartedAt: w.StartedAt}, nil)
			}
			o := rotation.PendingSettle(w.StartedAt, b.now().Add(wait).UTC())
			pending = b.notePending(ctx, s, cfg, o)
			continue
		}
		if cfg, err = b.settleWAL(ctx, s, cfg, id, w); err != nil {
			return nil, err
		}
	}
	if pending != nil {
		return nil, pending
	}
	if !unsettled && !cfg.OutcomeCheckAt.IsZero() {
		// The status says a refresh is unsettled, but no WAL entry of the stored token is left:
		// its outcome was known and only the status write failed. Nothing can still apply it, so
		// ask inabit now rather than say "outcome unknown" until the next rotation.
		return b.settleWAL(ctx, s, cfg, "", &rotationWAL{StartedAt: cfg.LastRotationErrorAt})
	}
	return cfg, nil
}

// settleWAL probes the old token of one rotation that is past its grace period.
func (b *backend) settleWAL(ctx context.Context, s logical.Storage, cfg *inabitConfig, id string, w *rotationWAL) (*inabitConfig, error) {
	p, a, probeErr := b.probe(ctx, b.clientFor(cfg), cfg)
	o := rotation.AfterSettleProbe(p, a, causeOf(probeErr), w.StartedAt, b.now())
	switch o.Kind {
	case rotation.Settled:
		b.deleteWAL(ctx, s, id)
		b.logger.Info("an unfinished login-token refresh was not applied: the login token still works", "started_at", formatTime(w.StartedAt))
		updated, err := b.writeStatus(ctx, s, cfg.LoginToken, func(c *inabitConfig) bool {
			if c.OutcomeCheckAt.IsZero() {
				return false
			}
			c.clearRotationStatus()
			return true
		})
		if err != nil || updated == nil {
			return cfg, nil
		}
		return updated, nil
	case rotation.Lost:
		return nil, b.concludeLost(ctx, s, cfg, triggerSettle, id, o, probeErr)
	default:
		if !b.login.firstSettleMiss(id) {
			// Already said once by this process: keep the status's check time true, quietly.
			return nil, b.notePending(ctx, s, cfg, o)
		}
		return nil, b.conclude(ctx, s, cfg, triggerSettle, o, probeErr)
	}
}

// expiredAndDead says the login token is past its exp on this node's clock and inabit rejects it.
func (b *backend) expiredAndDead(ctx context.Context, cfg *inabitConfig) bool {
	exp := cfg.claims().ExpiresAt
	if exp.IsZero() || b.now().Before(exp) {
		return false
	}
	p, _, _ := b.probe(ctx, b.clientFor(cfg), cfg)
	return p == rotation.Dead
}

// notePending keeps a pending outcome's status true without a new failure or event: the check
// time moves to o's when the stored one has passed. It returns the Pending *outcomeError.
func (b *backend) notePending(ctx context.Context, s logical.Storage, cfg *inabitConfig, o rotation.Outcome) error {
	msg := rotation.Message(o, b.configPath())
	now := b.now()
	_, _ = b.writeStatus(ctx, s, cfg.LoginToken, func(c *inabitConfig) bool {
		if c.LoginTokenLost || !c.OutcomeCheckAt.Before(now) {
			return false
		}
		c.LastRotationError, c.OutcomeCheckAt = msg, o.CheckAt
		return true
	})
	return &outcomeError{outcome: o, msg: msg}
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

// walRollback is Vault's backstop for entries older than WALRollbackMinAge, which the tick
// should have settled long before. Returning an error keeps the entry.
func (b *backend) walRollback(ctx context.Context, req *logical.Request, kind string, _ interface{}) error {
	b.login.walsMayExist() // Vault found an entry: the next tick lists the prefix again
	if kind != walKindRotation {
		return nil
	}
	if !b.WriteSafeReplicationState() {
		return errors.New("rotation WAL entries are settled only where inabit may be called")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ctx, cancel := detached(ctx, maxRotationDuration)
	defer cancel()
	_, err := b.prepareRotationLocked(ctx, req.Storage)
	var oerr *outcomeError
	switch {
	case errors.Is(err, errNoConfig):
		return nil // nothing left to protect
	case errors.As(err, &oerr) && oerr.outcome.Kind == rotation.Lost && oerr.recorded:
		return nil // LOST is in storage; the entry has served its purpose
	default:
		return err
	}
}
