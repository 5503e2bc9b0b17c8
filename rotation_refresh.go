package inabit

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// The refresh, the one step that cannot be undone, under b.loginMu: the rotation records (the WAL
// entry of wal.go and the in-flight status), the call to inabit, and the new token put in use and
// saved, or held in memory when storage refuses it. rotateLocked (rotation.go) calls it and hands
// what happened to the conclusions (rotation_outcome.go).

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
	b.login.walsMayExist() // before the entry exists: an idle tick must list it from now on
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
