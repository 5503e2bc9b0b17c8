package inabit

// Edges of the protocol an adversarial review of the rotation refactor found (one glitch taken for
// LOST, a settle budget lowered under a refresh in flight, restarts faster than the grace, a
// suspended host, ...). Each test states the promise it checks; each failed when written (the
// commit that added it says on what).

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

var oneGlitch = mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "glitch", Times: 1}

// R1. A restarted node (no proof of life in this process) probes before its first refresh, and
// BeforeRefresh turns ONE UNAUTHENTICATED answer into a sticky LOST; the same single glitch seen
// by a read is given a second look (TestOneRejectionThatInabitTakesBackIsNotLost).
func TestRestartedNodeOneGlitchBeforeRefreshIsNotLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h"})
	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil)     // restart / failover: nothing proven in this process
	env.clock.advance(2 * time.Hour) // rotation is due
	env.mock.InjectFault(mockinabit.OpAccessToken, oneGlitch)
	env.tick(t)
	stored := storedToken(t, env)
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true {
		t.Fatalf("false LOST on one glitch: stored token live at inabit: %v; status %q",
			env.mock.LoginTokenValid(stored), cfg["last_rotation_error"])
	}
}

// R2. A rotation whose verification got no answer (a 503) sets "not confirmed"; the next tick's
// confirm probe then turns ONE UNAUTHENTICATED answer into LOST of a token inabit just minted.
func TestUnconfirmedAfterVerifyOneGlitchIsNotLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "busy", Times: 3})
	resp, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if err != nil || len(resp.Warnings) == 0 {
		t.Fatalf("setup: rotate-root %v %v; want 200 with a 'not confirmed' warning", resp, err)
	}
	env.clock.advance(time.Minute)
	env.mock.InjectFault(mockinabit.OpAccessToken, oneGlitch)
	env.tick(t)
	stored := storedToken(t, env)
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true {
		t.Fatalf("false LOST on one glitch: stored token live at inabit: %v; status %q",
			env.mock.LoginTokenValid(stored), cfg["last_rotation_error"])
	}
}

// R3. A rotated token that storage refused is held, and saved on a later tick with a healthy
// status, without ever being verified: a token inabit does not accept ends up "healthy".
func TestHeldTokenIsVerifiedBeforeItIsReportedHealthy(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&answerRewriter{base: http.DefaultTransport, rewrite: func(body string) string {
		if strings.Contains(body, "refreshApiUserLoginToken") {
			return `{"data":{"refreshApiUserLoginToken":"not-a-jwt"}}`
		}
		return body
	}})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // in-flight status ok, the save fails
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatalf("setup: rotate-root: %v", err)
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(time.Minute)
	env.tick(t) // saves the held token
	env.clock.advance(time.Minute)
	env.tick(t)
	stored := storedToken(t, env)
	if stored != "not-a-jwt" {
		t.Fatalf("setup: stored %q", stored)
	}
	if s := rotationStatus(t, env); s == "" {
		t.Fatal("status healthy on a stored login token inabit does not accept (never verified after the held save)")
	}
}

// R4. With verify_connection=false stored, writing the same (dead) login token again clears LOST
// without asking inabit: "only writing a login token that inabit accepts clears it" does not hold.
func TestSameDeadTokenWithoutVerificationKeepsLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	dead := env.mock.LoginToken()
	env.mock.IssueLoginToken() // revoked at inabit
	if err := env.readTokenErr(); err == nil {
		t.Fatal("setup: read with a revoked token succeeded")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if cfg := env.readConfig(t); cfg["login_token_lost"] != true {
		t.Fatalf("setup: not LOST: %q", cfg["last_rotation_error"])
	}
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": dead}); err != nil {
		t.Logf("write of the same dead token refused: %v", err)
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if cfg := env.readConfig(t); cfg["login_token_lost"] != true && cfg["last_rotation_error"] == "" {
		t.Fatalf("the same dead token written again (unverified) is reported healthy; inabit accepts it: %v", env.mock.LoginTokenValid(dead))
	}
}

// R5. The access-token cache counts remaining life on the monotonic clock only. Go's monotonic
// clock on Linux (CLOCK_MONOTONIC) stops while the host is suspended or the VM paused; the wall
// clock does not. After a 16-minute pause the cached 15-minute token is expired at inabit, but it
// is served as fresh with a ~14-minute lease. (Modelled with clock.step: wall moves, mono not.)
func TestCachedAccessTokenAfterHostSuspendIsNotServedExpired(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, nil)
	env.readToken(t)
	env.clock.step(16 * time.Minute) // suspend: wall clock moved on, monotonic clock did not
	resp := env.readToken(t)
	if tok := resp.Data["access_token"].(string); !env.mock.AccessTokenValid(tok) {
		t.Fatalf("served an access token inabit considers expired, lease %s, expires_at %v",
			resp.Secret.TTL, resp.Data["expires_at"])
	}
}

// flipStorage hands out, on every read of config, a config holding a different login token
// (hostile or flapping storage): each is already dead at inabit.
type flipStorage struct {
	logical.Storage
	env   *testEnv
	reads int
}

func (s *flipStorage) Get(ctx context.Context, key string) (*logical.StorageEntry, error) {
	e, err := s.Storage.Get(ctx, key)
	if err != nil || e == nil || key != configStorageKey {
		return e, err
	}
	s.reads++
	cfg := defaultConfig()
	if err := e.DecodeJSON(cfg); err != nil {
		return nil, err
	}
	cfg.LoginToken = s.env.mock.LoginToken() // a token inabit has just killed
	s.env.mock.IssueLoginToken()
	if s.reads > 50 {
		return e, nil // stop the test from running away
	}
	return logical.StorageEntryJSON(configStorageKey, cfg)
}

// R6. sharedAccessToken retries itself, unbounded, whenever storage's token differs from the one
// inabit rejected: one read may make any number of upstream calls and storage reads.
func TestUnauthenticatedRereadIsBounded(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.b.login.dropAll()
	env.mock.IssueLoginToken()
	env.mock.ResetCalls()
	fs := &flipStorage{Storage: env.storage, env: env}
	_, _ = env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: fs})
	if n := env.mock.Calls(mockinabit.OpAccessToken); n > 2 {
		t.Fatalf("one token read made %d access-token calls and %d config reads (unbounded re-read recursion)", n, fs.reads)
	}
}

// R7 (-race). Readers of both paths, rotations, ticks, invalidations and config writes at once:
// no race, no deadlock, and the stored token works at the end with no LOST said.
func TestConcurrentEverything(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"access_token_min_ttl": "15m"})
	done := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			path := []string{"token", "static-token"}[i%2]
			for {
				select {
				case <-done:
					return
				default:
				}
				_, _ = env.request(logical.ReadOperation, path, nil)
				if i == 0 {
					env.b.InvalidateKey(context.Background(), configStorageKey)
				}
			}
		}(i)
	}
	for i := 0; i < 8; i++ {
		if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
			t.Errorf("rotate-root %d: %v", i, err)
		}
		env.tick(t)
		if i%3 == 0 {
			if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken()}); err != nil {
				t.Errorf("config write: %v", err)
			}
		}
	}
	close(done)
	wg.Wait()
	env.clock.advance(time.Minute)
	env.tick(t)
	stored := storedToken(t, env)
	cfg := env.readConfig(t)
	if !env.mock.LoginTokenValid(stored) || cfg["login_token_lost"] == true || cfg["last_rotation_error"] != "" {
		t.Fatalf("after the storm: stored live %v, lost %v, status %q", env.mock.LoginTokenValid(stored), cfg["login_token_lost"], cfg["last_rotation_error"])
	}
}

// R8 (held up). A rejection a read saw, then inabit unreachable for ten ticks: one fail event, not
// one a minute.
func TestConfirmIsNotNoisy(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.InjectFault(mockinabit.OpAccessToken, oneGlitch)
	_ = env.readTokenErr()
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "down"})
	for i := 0; i < 10; i++ {
		env.clock.advance(time.Minute)
		env.tick(t)
	}
	n := 0
	for _, ty := range env.eventTypes() {
		if ty == eventRotateFail {
			n++
		}
	}
	if n > 1 {
		t.Fatalf("%d fail events in ten ticks; status %q", n, rotationStatus(t, env))
	}
	env.mock.ClearFaults()
	env.clock.advance(time.Minute)
	env.tick(t)
	if s := rotationStatus(t, env); s != "" {
		t.Fatalf("not healthy again once inabit answers: %q", s)
	}
}

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

// R11 (message). A rotated token whose verification got a 503 is "not confirmed"; inabit never
// rejected anything. The next rotate-root while inabit is unreachable says it did.
func TestUnconfirmedMessageDoesNotInventARejection(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "busy", Times: 3})
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatalf("setup: %v", err)
	}
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "down"})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if err == nil {
		t.Fatal("setup: rotate-root succeeded")
	}
	if strings.Contains(err.Error(), "rejected") {
		t.Fatalf("inabit never rejected the token, yet: %v", err)
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

// R13. A GraphQL FORBIDDEN whose message says "unauthorized" (a role without the right: the token
// itself works) is classified as UNAUTHENTICATED because the message test comes before the code
// test. Older code only failed reads with it; now reads' rejections are confirmed by the tick
// into a sticky LOST of a live token.
func TestForbiddenSayingUnauthorizedIsNotLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "FORBIDDEN",
		Message: "Unauthorized: the API user's role may not request access tokens"})
	_ = env.readTokenErr()
	env.clock.advance(time.Minute)
	env.tick(t)
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true {
		t.Fatalf("false LOST on FORBIDDEN: stored token live at inabit: %v; status %q",
			env.mock.LoginTokenValid(storedToken(t, env)), cfg["last_rotation_error"])
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
