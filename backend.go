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

// Version is reported to Vault as the plugin's running version; release builds set it with
// -ldflags "-X github.com/inabit/vault-plugin-secrets-inabit.Version=v1.2.3".
var Version = "v0.1.0-dev"

const backendHelp = `
The inabit secrets engine keeps an inabit API user's login token inside Vault, rotates it
long before it expires, and issues short-lived inabit access tokens as leases.

Write the login token once to "config", then read "token" for an access token.
One mount serves one API user.
`

// backend is one mount. Three locks, always taken in this order when nested:
//   - mu serialises every rotation and config write on this node (the mount lock);
//   - loginMu is write-held while the login token in use is being replaced, and read-held by
//     access-token fetches, so no fetch presents a token that a refresh is killing;
//   - stateMu guards the in-memory fields below and is never held across I/O.
type backend struct {
	*framework.Backend
	logger hclog.Logger

	mu      sync.Mutex
	loginMu sync.RWMutex

	stateMu sync.Mutex
	// config caches the storage entry; nil means "read storage". When unsaved is true it is
	// ahead of storage: it holds a rotated login token whose persist failed, and it is the only
	// copy of that token.
	config     *inabitConfig
	unsaved    bool
	unsavedWAL string
	client     inabitAPI
	clientKey  string
	access     *accessToken
	// claimsToken/claimsValue memoise the login token's claims: parsing a JWT on every token read
	// was two thirds of the cached read path.
	claimsToken string
	claimsValue tokenClaims
	// rejectedToken is the hash of a login token inabit itself rejected on this node: it is
	// probed before any refresh, and never refreshed.
	rejectedToken string
	// walSeen is when this node first saw each rotation WAL entry (its own: when it wrote it).
	// Settling waits refresh_grace_period on this node's clock from then too, so a node whose
	// clock runs ahead of the writer's cannot settle a refresh inabit may still be applying.
	walSeen map[string]time.Time
	// mountPath is the mount's path as requests name it ("inabit-admin/"), for messages.
	mountPath atomic.Value
	// generation changes whenever the login token in use or the cached access token is
	// invalidated; a fetch started under an older generation never fills the cache.
	generation uint64

	flight singleflight.Group

	// now is a field so tests can move the clock; WALRollbackMinAge on framework.Backend likewise.
	now func() time.Time
	// newAPI builds the client for an endpoint: inabitapi.New in production; tests put an
	// in-process inabit under it.
	newAPI func(url string, timeout time.Duration) inabitAPI
	// noRetryWait, false in production, makes the save's retries immediate so a virtual clock is
	// never outrun by real sleeps (the client's own are set through newAPI).
	noRetryWait bool
}

// Factory is the plugin entry point used by cmd/ and by tests.
func Factory(ctx context.Context, conf *logical.BackendConfig) (logical.Backend, error) {
	b := newBackend(conf)
	if err := b.Setup(ctx, conf); err != nil {
		return nil, err
	}
	return b, nil
}

func newBackend(conf *logical.BackendConfig) *backend {
	b := &backend{now: time.Now, newAPI: newInabitAPI}
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
			[]*framework.Path{pathConfig(b), pathToken(b), pathStaticToken(b), pathRotateRoot(b)},
		),
		Secrets:           []*framework.Secret{secretAccessToken(b)},
		PeriodicFunc:      b.periodicFunc,
		WALRollback:       b.walRollback,
		WALRollbackMinAge: defaultWALRollbackMinAge,
		Invalidate:        b.invalidate,
		Clean:             b.clean,
		RunningVersion:    Version,
	}
	return b
}

// invalidate runs on standbys when another node changed storage.
func (b *backend) invalidate(_ context.Context, key string) {
	if key != configStorageKey {
		return
	}
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.unsaved {
		// Only the active node holds unsaved state, and it is the one writing: keep the only
		// copy of the rotated token rather than trade it for an older stored one.
		b.logger.Warn("ignoring config invalidation while a rotated login token is not yet saved")
		return
	}
	b.dropStateLocked()
}

// cleanWait bounds how long Clean waits for a rotation in flight to save its token.
const cleanWait = 30 * time.Second

// clean runs on unmount, reload, seal and step-down. A rotation in flight may be holding a token
// inabit has already minted; give it a bounded time to save it, and say so loudly if it cannot.
func (b *backend) clean(context.Context) {
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
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.unsaved {
		b.logger.Error("plugin stopping while a rotated login token was never saved to storage; " +
			"inabit has already killed the stored one: write a new login_token to config")
	}
	b.dropStateLocked()
	b.unsaved = false
	b.unsavedWAL = ""
}

func (b *backend) dropStateLocked() {
	b.config = nil
	b.access = nil
	if b.client != nil {
		b.client.CloseIdle()
	}
	b.client = nil
	b.clientKey = ""
	b.generation++
}

// clientFor returns a client for cfg's endpoint, reusing its connections while the endpoint and
// timeout stay the same.
func (b *backend) clientFor(cfg *inabitConfig) inabitAPI {
	key := cfg.URL + "|" + cfg.RequestTimeout.String()
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
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

// loginClaims is cfg.claims() memoised for the token in use.
func (b *backend) loginClaims(cfg *inabitConfig) tokenClaims {
	b.stateMu.Lock()
	if b.claimsToken == cfg.LoginToken {
		c := b.claimsValue
		b.stateMu.Unlock()
		return c
	}
	b.stateMu.Unlock()
	c := cfg.claims()
	b.stateMu.Lock()
	b.claimsToken, b.claimsValue = cfg.LoginToken, c
	b.stateMu.Unlock()
	return c
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

// noteWALSeen records when this node first saw a WAL entry and returns that time.
func (b *backend) noteWALSeen(id string, now time.Time) time.Time {
	b.stateMu.Lock()
	defer b.stateMu.Unlock()
	if b.walSeen == nil {
		b.walSeen = map[string]time.Time{}
	}
	if seen, ok := b.walSeen[id]; ok {
		return seen
	}
	b.walSeen[id] = now
	return now
}

func (b *backend) forgetWAL(id string) {
	b.stateMu.Lock()
	delete(b.walSeen, id)
	b.stateMu.Unlock()
}

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
