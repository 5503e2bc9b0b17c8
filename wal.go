package inabit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"
)

// Unfinished rotations. A WAL entry is written before every refresh and deleted once its outcome
// is known. An entry may belong to this node's refresh whose answer never came, or to another
// node that died or stepped down mid-refresh; either way inabit may still be applying that
// refresh, so an entry is settled (by probing the old token) only once it is older than
// refresh_grace_period, and until then no new refresh is sent.

const (
	walKindRotation = "login-token-rotation"
	// defaultWALRollbackMinAge keeps Vault's own WAL rollback away from entries the periodic tick
	// is still waiting on (refresh_grace_period is at most 1h); it is only a backstop.
	defaultWALRollbackMinAge = maxRefreshGracePeriod + maxRotationDuration + 10*time.Minute
)

// rotationWAL records that a refresh may be in flight. It holds no secret: a hash is enough to
// tell whether the stored token moved on, and the old token itself is still in config.
type rotationWAL struct {
	OldTokenSHA256 string    `json:"old_token_sha256"`
	StartedAt      time.Time `json:"started_at"`
}

// settleWALsLocked settles every unfinished rotation of the stored token that is old enough, and
// returns a pending *rotationError while any is still too young. It returns the config to rotate
// from. Callers hold b.mu and pass a detached context.
func (b *backend) settleWALsLocked(ctx context.Context, s logical.Storage, cfg *inabitConfig) (*inabitConfig, error) {
	ids, err := framework.ListWAL(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("listing rotation WAL entries: %w", err)
	}
	var pending error
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
		checkAt := cfg.outcomeCheckAt(w.StartedAt)
		seen := b.noteWALSeen(id, b.now())
		if b.now().Before(checkAt.Add(clockSkew)) {
			// Near the boundary the writer's clock may be behind ours: also wait the grace on
			// this node's own clock, from when it first saw the entry.
			if local := cfg.outcomeCheckAt(seen); local.After(checkAt) {
				checkAt = local
			}
		}
		if cfg.OutcomeCheckAt.After(checkAt) {
			checkAt = cfg.OutcomeCheckAt // a settle attempt already failed: wait as the status says
		}
		if b.now().Before(checkAt) {
			pending = &rotationError{pending: true, checkAt: checkAt, msg: fmt.Sprintf(
				"a login-token refresh started at %s (on this node or one that has since stopped) may still be applied by inabit: "+
					"its outcome unknown, checked again at %s; no refresh is sent until then", formatTime(w.StartedAt), formatTime(checkAt))}
			continue
		}
		if cfg, err = b.settleWAL(ctx, s, cfg, id, w); err != nil {
			return nil, err
		}
	}
	if pending != nil {
		return nil, pending
	}
	return cfg, nil
}

// settleWAL probes the old token of one rotation that is past its grace period.
func (b *backend) settleWAL(ctx context.Context, s logical.Storage, cfg *inabitConfig, id string, w *rotationWAL) (*inabitConfig, error) {
	switch state, probeErr := b.probeOldToken(ctx, b.clientFor(cfg), cfg); state {
	case tokenAlive:
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
	case tokenDead:
		return nil, b.recordLost(ctx, s, cfg, triggerSettle, id, &rotationError{lost: true, err: probeErr,
			msg: lostTokenMessage(w.StartedAt, nil, b.configPath())})
	default:
		retryAt := b.now().Add(time.Minute).UTC()
		return nil, b.recordFailure(ctx, s, cfg, triggerSettle, &rotationError{pending: true, checkAt: retryAt, err: probeErr, msg: fmt.Sprintf(
			"the login-token refresh started at %s got no answer, and inabit cannot be asked whether it was applied (%v): "+
				"its outcome unknown, checked again at %s; no refresh is sent until then", formatTime(w.StartedAt), probeErr, formatTime(retryAt))})
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
	var rerr *rotationError
	switch {
	case errors.Is(err, errNoConfig):
		return nil // nothing left to protect
	case errors.As(err, &rerr) && rerr.lost && rerr.recorded:
		return nil // LOST is in storage; the entry has served its purpose
	default:
		return err
	}
}
