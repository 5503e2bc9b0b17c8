// Package inabit is a Vault secrets engine that holds an inabit API user's login token, rotates
// it before it expires, and hands out short-lived inabit access tokens as Vault leases.
package inabit

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"golang.org/x/sync/singleflight"
)

const backendHelp = `
The inabit secrets engine keeps an inabit API user's login token inside Vault, rotates it
long before it expires, and issues short-lived inabit access tokens as leases.

Write the login token once to "config", then read "token" for an access token.
One mount serves one API user.
`

// backend is one mount. Two locks, always taken in this order when nested:
//   - mu serialises every rotation and config write on this node (the mount lock);
//   - loginMu is write-held while the login token in use is being replaced, and read-held by
//     access-token fetches, so no fetch presents a token that a refresh is killing.
//
// The in-memory login state has one owner, login, with its own lock never held across I/O.
type backend struct {
	*framework.Backend
	logger hclog.Logger

	mu      sync.Mutex
	loginMu sync.RWMutex
	login   loginState

	clientMu  sync.Mutex
	client    inabitAPI
	clientKey string

	// mountPath is the mount's path as requests name it ("inabit-admin/"), for messages.
	mountPath atomic.Value
	// stopping is set when Vault stops this backend (unmount, seal, step-down): a token rotated
	// now cannot be held in memory for long.
	stopping atomic.Bool
	// counted: this backend is among the process's live mounts (herd.go).
	counted atomic.Bool

	flight singleflight.Group

	// now is the wall clock (schedules, status, claims); mono is a clock that never steps, for
	// every duration the protocol waits out; sleep waits d of the time mono counts (the pause
	// between a rotated token's save retries), or until ctx ends, then returns ctx's cause. Fields
	// so tests and the simulation can drive them, set together; WALRollbackMinAge on
	// framework.Backend likewise.
	now   func() time.Time
	mono  func() time.Duration
	sleep func(ctx context.Context, d time.Duration) error
	// newAPI builds the client for an endpoint: inabitapi.New in production; tests put an
	// in-process inabit under it (the client's own retry waits are set there).
	newAPI func(url string, timeout time.Duration) inabitAPI
}

// Factory is the plugin entry point used by cmd/ and by tests.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(conf)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	b.countMount()
	return b, nil
}

func newBackend(conf *logical.BackendConfig) *backend {
	started := time.Now()
	b := &backend{now: time.Now, mono: func() time.Duration { return time.Since(started) }, sleep: sleepCtx, newAPI: newInabitAPI}
	if conf != nil && conf.Logger != nil {
		b.logger = conf.Logger
	} else {
		b.logger = hclog.NewNullLogger()
	}
	b.Backend = &framework.Backend{
		Help:        strings.TrimSpace(backendHelp),
		BackendType: logical.TypeLogical,
		PathsSpecial: &logical.Paths{
			SealWrapStorage: []string{configStorageKey},
			// Performance secondaries never rotate, so they have no use for a primary's WAL.
			LocalStorage: []string{framework.WALPrefix},
		},
		Paths: framework.PathAppend(
			[]*framework.Path{pathConfig(b), pathToken(b), pathStaticToken(b), pathRotateRoot(b), pathHealth(b)},
		),
		Secrets:           []*framework.Secret{secretAccessToken(b)},
		PeriodicFunc:      b.periodicFunc,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: defaultWALRollbackMinAge,
		Invalidate:        b.invalidate,
		Clean:             b.clean,
		RunningVersion:    pluginVersion(),
	}
	return b
}

// sleepCtx is the backend's sleep on real time: it waits d, or until ctx ends, and returns ctx's
// cause then (at once when ctx has already ended).
func sleepCtx(ctx context.Context, d time.Duration) error {
	if err := context.Cause(ctx); err != nil {
		return err
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// invalidate runs on standbys when another node changed storage.
func (b *backend) invalidate(_ context.Context, key string) {
	b.login.walsMayExist() // a WAL entry, or a config whose rotation may have written one
	if key != configStorageKey {
		return
	}
	if b.login.invalidate() {
		// Only the active node holds unsaved state, and it is the one writing: keep the only
		// copy of the rotated token rather than trade it for an older stored one.
		b.logger.Warn("ignoring config invalidation while a rotated login token is not yet saved")
		return
	}
	b.dropClient()
}

// cleanWait bounds how long Clean waits for a rotation in flight to save its token.
const cleanWait = 30 * time.Second

// clean runs on unmount, reload, seal and step-down. A rotation in flight may be holding a token
// inabit has already minted; give it a bounded time to save it, and say so loudly if it cannot.
func (b *backend) clean(context.Context) {
	b.stopping.Store(true)
	b.uncountMount()
	deadline := time.Now().Add(cleanWait)
	for !b.mu.TryLock() {
		if time.Now().After(deadline) {
			b.logger.Error("plugin stopping while a login-token rotation is still running after " + cleanWait.String() +
				"; if inabit applies it and its answer is not saved, the next active node reports LOGIN TOKEN LOST once it settles the rotation's WAL entry")
			b.dropAll()
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer b.mu.Unlock()
	b.dropAll()
}

func (b *backend) dropAll() {
	if b.login.dropAll() {
		b.logger.Error("plugin stopping while a rotated login token was never saved to storage; " +
			"inabit has already killed the stored one: write a new login_token to config")
	}
	b.dropClient()
}

func (b *backend) dropClient() {
	b.clientMu.Lock()
	defer b.clientMu.Unlock()
	if b.client != nil {
		b.client.CloseIdle()
	}
	b.client, b.clientKey = nil, ""
}

// clientFor returns a client for cfg's endpoint, reusing its connections while the endpoint and
// timeout stay the same.
func (b *backend) clientFor(cfg *inabitConfig) inabitAPI {
	key := cfg.URL + "|" + cfg.RequestTimeout.String()
	b.clientMu.Lock()
	defer b.clientMu.Unlock()
	if b.client == nil || b.clientKey != key {
		if b.client != nil {
			b.client.CloseIdle()
		}
		b.client = b.newAPI(cfg.URL, cfg.RequestTimeout)
		b.clientKey = key
	}
	return b.client
}

// sendEvent never fails the operation: events are a notification channel, and Community Vault
// without subscribers is the common case.
func (b *backend) sendEvent(ctx context.Context, eventType string, metadata ...string) {
	if err := logical.SendEvent(ctx, b, eventType, metadata...); err != nil {
		b.logger.Debug("event not sent", "type", eventType, "error", err)
	}
}

// noteMount remembers the mount path requests arrive on, so that messages name it.
func (b *backend) noteMount(req *logical.Request) {
	if req != nil && req.MountPoint != "" {
		if cur, _ := b.mountPath.Load().(string); cur != req.MountPoint {
			b.mountPath.Store(req.MountPoint)
		}
	}
}

func (b *backend) mountOrDefault() string {
	if m, _ := b.mountPath.Load().(string); m != "" {
		return m
	}
	return "inabit/"
}

// configPath is the config path as an operator types it: "inabit-admin/config".
func (b *backend) configPath() string { return b.mountOrDefault() + pathConfigPattern }

// HandleRequest keeps the framework's field validation from quoting a secret back: its 400 for a
// wrongly typed field includes the value, and a login_token sent as an object is the token.
func (b *backend) HandleRequest(ctx context.Context, req *logical.Request) (*logical.Response, error) {
	if req != nil && req.Path == pathConfigPattern {
		if raw, ok := req.Data[fieldLoginToken]; ok {
			if _, isString := raw.(string); !isString {
				return logical.ErrorResponse("%s must be a string: the API user's login token (a JWT)", fieldLoginToken), nil
			}
		}
	}
	resp, err := b.Backend.HandleRequest(ctx, req)
	if resp != nil && resp.IsError() {
		if msg, ok := resp.Data["error"].(string); ok {
			resp.Data["error"] = inabitapi.Redact(msg)
		}
	}
	return resp, err
}
