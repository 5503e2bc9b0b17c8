package inabit

// Protocol edges of a refresh in flight or refused: when it is settled, and the expiry deadline.

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// R9. The settle budget is computed from the settling node's CURRENT config, not from the budget
// the refresh was sent under. Node A sends a refresh with request_timeout=5m (its call may stay
// open 5m2s) and stops being able to save (step-down: its storage is gone). Node B takes over; an
// operator, seeing "outcome unknown", lowers request_timeout to 1s. B then settles A's entry
// 43 s after first seeing it, probes the still-alive old token, deletes the WAL and clears the
// status; inabit applies A's refresh a moment later: the stored token is dead, the new one died
// with A, and the status says healthy. Nothing records LOST.
func TestSettleUsesTheBudgetTheRefreshWasSentUnder(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 300, "refresh_grace_period": 30})
	old := env.mock.LoginToken()
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 2 * time.Second, Times: 1})
	va := &vaultStorage{Storage: env.storage}
	aDone := make(chan struct{})
	go func() {
		defer close(aDone)
		_, _ = env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: va})
	}()
	waitFor(t, "A's refresh on the wire", func() bool { return env.mock.Calls(mockinabit.OpRefresh) == 1 })
	va.close() // A steps down: its storage is gone, its HTTP call is still open

	nodeB := newNode(t, env, nil)
	reqB := func(op logical.Operation, path string, data map[string]interface{}) (*logical.Response, error) {
		return nodeB.HandleRequest(context.Background(), &logical.Request{Operation: op, Path: path, Data: data, Storage: env.storage})
	}
	_, _ = reqB(logical.RollbackOperation, "", nil) // B first sees A's WAL entry: pending
	if resp, err := reqB(logical.UpdateOperation, "config", map[string]interface{}{"request_timeout": 1}); err != nil || resp.IsError() {
		t.Fatalf("operator's config write on B: %v %v", resp, err)
	}
	env.clock.advance(44 * time.Second) // 10s + (1s+2s) + 30s on B's clock
	_, _ = reqB(logical.RollbackOperation, "", nil)
	<-aDone // inabit has applied A's refresh by now; A could not save the new token
	if env.mock.LoginTokenValid(old) {
		t.Fatal("setup: A's refresh was not applied")
	}
	env.clock.advance(time.Minute)
	_, _ = reqB(logical.RollbackOperation, "", nil)
	resp, _ := reqB(logical.ReadOperation, "config", nil)
	if resp.Data["login_token_lost"] != true && walCount(t, env) == 0 {
		t.Fatalf("silent loss: stored token dead at inabit (%v), no WAL entry left, status %q",
			!env.mock.LoginTokenValid(storedToken(t, env)), resp.Data["last_rotation_error"])
	}
}

// R10 (noise; behaviour older than this change). An unfinished refresh past its grace while
// inabit cannot be asked: every tick records a failure, logs an error and sends a fail event.
func TestSettleWhileInabitUnreachableIsNotNoisy(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"refresh_grace_period": 30, "request_timeout": 1})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 502, Body: "bad gateway", Times: 1})
	_, _ = env.requestOK(logical.UpdateOperation, "rotate-root", nil) // pending
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "down"})
	before := len(env.eventTypes())
	for i := 0; i < 5; i++ {
		env.clock.advance(time.Minute)
		env.tick(t)
	}
	after := env.eventTypes()[before:]
	if len(after) > 1 {
		t.Fatalf("%d fail events in five ticks while the outcome stays unknown (rotation_failures %v)", len(after), env.readConfig(t)["rotation_failures"])
	}
}

// R12. Settling counts only time this process has seen the entry. A node that restarts (or a
// cluster whose leadership moves) more often than refresh_grace_period + request_timeout + 12 s
// never settles an unfinished refresh: the status stays "outcome unknown" past the token's exp,
// and LOST is never said (reads fail meanwhile, and their rejections are never confirmed because
// the pending entry stops every tick before the confirm step).
func TestPendingSettlesDespiteRestartsMoreOftenThanTheGrace(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 6 * time.Hour})
	env.configure(t, map[string]interface{}{"rotation_period": "3h", "request_timeout": 1, "refresh_grace_period": 600})
	started := env.clock.now().UTC()
	putWAL(t, env, env.mock.LoginToken(), started) // a refresh whose answer never came...
	if err := env.b.markRefreshInFlight(context.Background(), env.storage, storedConfig(t, env), started); err != nil {
		t.Fatal(err)
	}
	env.mock.IssueLoginToken() // ...and inabit applied it
	for i := 0; i < 40; i++ {  // 40 × 9 min = 6 h: past exp
		env.b.Cleanup(context.Background())
		env.b = newNode(t, env, nil) // restart / new leader
		env.tick(t)
		env.clock.advance(9 * time.Minute)
		env.tick(t)
	}
	cfg := env.readConfig(t)
	if cfg["login_token_lost"] != true {
		t.Fatalf("after 6 h of restarts every 9 min: WAL entries %d, lost %v, status %q",
			walCount(t, env), cfg["login_token_lost"], cfg["last_rotation_error"])
	}
}

// R14 (design). A restarted node refuses to refresh until getApiUserAccessToken answers. While
// that query alone fails (a WAF rule, a broken resolver, a role change), the token reaches its
// exp without one refresh being sent, though inabit would have accepted it; d1faa1c refreshed.
// The expiry deadline should win over "probe first", as it wins over backoff and Retry-After.
func TestProbeBeforeRefreshDoesNotLetTheTokenExpire(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 2 * time.Hour})
	env.configure(t, map[string]interface{}{"rotation_period": "1h", "request_timeout": 1})
	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, func(*logical.BackendConfig) {})
	env.b.newAPI = apiOver(http.DefaultTransport, inabitapi.WithoutRetryWait())
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, Body: "<html><title>Blocked</title></html>"})
	for i := 0; i < 25; i++ { // 2 h 5 min in 5-minute steps
		env.clock.advance(5 * time.Minute)
		env.tick(t)
	}
	if env.mock.Calls(mockinabit.OpRefresh) == 0 {
		t.Fatalf("the login token expired (live: %v) without a refresh being sent; status %q",
			env.mock.LoginTokenValid(storedToken(t, env)), rotationStatus(t, env))
	}
}

// A refresh inabit answered UNAUTHENTICATED, whose old token inabit then cannot be asked about,
// is never followed by another refresh at the expiry deadline (found by the soak, seed 1001822):
// the refresh's rejection counts like a read's.
func TestRefreshRejectedThenUnansweredIsNotRefreshedAgainAtTheDeadline(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 2 * time.Hour})
	env.configure(t, map[string]interface{}{"rotation_period": "1h", "request_timeout": 1})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "no", Times: 1})
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "down"})
	env.clock.advance(90*time.Minute + time.Second) // past the expiry deadline (exp - 30m)
	env.tick(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("setup: %d refreshes, want 1", got)
	}
	for i := 0; i < 5; i++ {
		env.clock.advance(time.Minute)
		env.tick(t)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("%d refreshes sent with a token inabit rejected on the refresh, want 1", got)
	}
}
