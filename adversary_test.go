package inabit

// Adversarial review tests (branch review). Every test here FAILS on the code under review and
// names the defect it shows; see the review report for root causes and suggested fixes.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// --- (1) a refresh answer that carries the new token is thrown away -------------------------

// The refresh is applied and inabit's answer carries the new token in data, but the HTTP status
// is 500 (GraphQL servers commonly answer a partial result with 500, and gateways pass it on).
// Issue 8 defect 2: "a non-empty token in data.refreshApiUserLoginToken must be kept, whatever
// else the answer says". The plugin throws the token away, calls the outcome unknown, and after
// refresh_grace_period declares LOGIN TOKEN LOST -- with the new token once in its hands.
func TestAdversary_RefreshAnswerWithTokenAtHTTP500IsThrownAway(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tr := newProxyTransport()
	env.b.newAPI = apiOver(tr)
	env.configure(t, nil)
	old := env.mock.LoginToken()
	tr.mu.Lock()
	tr.rewriteRefresh = func(_ int, body []byte) (int, []byte) {
		return http.StatusInternalServerError, addGraphQLErrors(t, body, map[string]interface{}{
			"message": "audit log write failed", "extensions": map[string]interface{}{"code": "INTERNAL_SERVER_ERROR"}})
	}
	tr.mu.Unlock()

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	live := env.mock.LoginToken()
	if live == old {
		t.Fatal("setup: inabit did not apply the refresh")
	}
	if got := storedToken(t, env); got != live {
		status := storedConfig(t, env).LastRotationError
		env.clock.advance(pastGrace)
		env.tick(t)
		t.Fatalf("inabit answered HTTP 500 with the new token in data.refreshApiUserLoginToken; the plugin dropped it.\n"+
			"rotate-root: %v\nstatus right after: %q\nstatus after refresh_grace_period: %q",
			err, status, storedConfig(t, env).LastRotationError)
	}
}

// A 200 answer with the new token and an errors[] entry whose extensions.code is a number (the
// GraphQL spec leaves extensions free-form). parseGraphQL fails to decode it into graphQLAnswer
// (Code string), calls the whole answer "not GraphQL JSON", and the token is thrown away; after
// refresh_grace_period the mount reports LOGIN TOKEN LOST. The contract: "HTTP 200 with a
// non-empty string in data.refreshApiUserLoginToken -- EVEN IF the answer also carries errors[]".
func TestAdversary_PartialAnswerWithNumericErrorCodeIsThrownAway(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tr := newProxyTransport()
	env.b.newAPI = apiOver(tr)
	env.configure(t, nil)
	old := env.mock.LoginToken()
	tr.mu.Lock()
	tr.rewriteRefresh = func(status int, body []byte) (int, []byte) {
		return status, addGraphQLErrors(t, body, map[string]interface{}{
			"message": "audit sink slow", "extensions": map[string]interface{}{"code": 503}})
	}
	tr.mu.Unlock()

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	live := env.mock.LoginToken()
	if live == old {
		t.Fatal("setup: inabit did not apply the refresh")
	}
	if got := storedToken(t, env); got != live {
		status := storedConfig(t, env).LastRotationError
		env.clock.advance(pastGrace)
		env.tick(t)
		t.Fatalf("HTTP 200 carrying the new token plus errors[{extensions:{code:503}}]; the plugin dropped the token.\n"+
			"rotate-root: %v\nstatus right after: %q\nstatus after refresh_grace_period: %q",
			err, status, storedConfig(t, env).LastRotationError)
	}
}

// --- (1)/(2) the refresh is sent long after the WAL's StartedAt -----------------------------

// StartedAt (WAL entry and the "outcome unknown, checked again at" status) is taken before the
// rotation waits for loginMu, which a token read's access-token fetch holds for up to
// inabitapi.MaxAttempts x request_timeout (3 x 60s here). The refresh may therefore leave
// minutes after StartedAt, and refresh_grace_period, counted from StartedAt + request_timeout +
// 2s, no longer covers it: a node that takes over (step-down) settles the entry -- probe says
// "alive", WAL deleted, status cleared -- before the old active node has even sent the refresh.
// That node then kills the stored token and cannot save the new one: the login token is lost
// and the cluster's status says healthy.
func TestAdversary_RefreshSentAfterItsWALWasSettledByTheNextActiveNode(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tr := newProxyTransport()
	env.b.newAPI = apiOver(tr)
	env.configure(t, map[string]interface{}{"request_timeout": 60, "refresh_grace_period": 30})
	old := env.mock.LoginToken()

	// A token read on node A must fetch (its cached access token is no longer fresh enough), and
	// inabit is slow to answer it: the fetch holds loginMu.RLock.
	env.clock.advance(15 * time.Minute)
	tr.mu.Lock()
	tr.holdAccess = true
	tr.mu.Unlock()
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		_, _ = env.request(logical.ReadOperation, "token", nil)
	}()
	select {
	case <-tr.held:
	case <-time.After(10 * time.Second):
		t.Fatal("setup: the token read never reached inabit")
	}

	// rotate-root on node A: WAL and in-flight status written, then it waits for loginMu.
	vsA := &vaultStorage{Storage: env.storage}
	rotDone := make(chan *logical.Response, 1)
	go func() {
		resp, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vsA})
		if err != nil {
			resp = logical.ErrorResponse(err.Error())
		}
		rotDone <- resp
	}()
	// Fixed: the rotation takes loginMu before it writes its WAL entry and start time, so a
	// reader's slow fetch cannot make the refresh go out long after the time other nodes see.
	time.Sleep(time.Second)
	if n := walCount(t, env); n != 0 {
		t.Fatalf("a WAL entry was written while a reader still held the refresh back (%d entries)", n)
	}
	close(tr.release)
	<-readDone
	var resp *logical.Response
	select {
	case resp = <-rotDone:
	case <-time.After(20 * time.Second):
		t.Fatal("node A's rotation never finished")
	}
	stored := storedConfig(t, env)
	if resp.IsError() || env.mock.LoginTokenValid(old) || !env.mock.LoginTokenValid(stored.LoginToken) || walCount(t, env) != 0 {
		t.Fatalf("rotation after the reader let go: resp %v, stored token live %v, status %q", resp.Data, env.mock.LoginTokenValid(stored.LoginToken), stored.LastRotationError)
	}
}

// --- (4)/(6) schedules whose slots are further apart than the token lives -------------------

// maxSlotGap looks at the next 500 slots only. A schedule that fires in bursts ("every minute on
// Tuesdays", "every minute on the 1st") has 500 slots one minute apart and then a gap of days,
// so applySchedule accepts it for a token that dies between two bursts. Issue 11: "a schedule
// whose slots are further apart than the login token's lifetime is a 400 that says so".
func TestAdversary_BurstScheduleLongerThanTokenLifeIsAccepted(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	// Monday 2027-03-01 12:00 UTC on both clocks.
	env.clock.advance(time.Until(time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)))
	cases := []struct {
		schedule string
		life     time.Duration
	}{
		{"* * * * 2", 5 * 24 * time.Hour},  // Tuesdays only: 6 days between the last and next slot
		{"* * 1 * *", 10 * 24 * time.Hour}, // the 1st of the month only: ~30 days apart
	}
	for _, tc := range cases {
		now := env.clock.now()
		tok := makeJWT(t, jwt.MapClaims{"sub": "api-user", "iat": now.Unix(), "exp": now.Add(tc.life).Unix()})
		resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
			"login_token": tok, "url": env.srv.URL, "verify_connection": false, "rotation_schedule": tc.schedule})
		if err == nil && !resp.IsError() {
			next := env.readConfig(t)["next_rotation_at"]
			t.Errorf("rotation_schedule %q accepted for a login token living %s, though its slots are days apart "+
				"(true largest gap %s); next_rotation_at %v", tc.schedule, tc.life,
				advTrueGap(t, tc.schedule, now), next)
		}
	}
}

func advTrueGap(t *testing.T, expr string, from time.Time) time.Duration {
	s, err := rotation.ParseSchedule(expr)
	if err != nil {
		t.Fatal(err)
	}
	var gap time.Duration
	prev := s.Next(from.UTC())
	for i := 0; i < 100000; i++ {
		next := s.Next(prev)
		gap = max(gap, next.Sub(prev))
		prev = next
	}
	return gap
}

// A schedule that fires only in bursts and never at all: "0 0 30 2 *" (February 30th) is a valid
// cron expression that never fires. For a login token without exp, applySchedule lets it
// through (the gap check only runs when the token has a lifetime), automated rotation is then
// silently off and next_rotation_at is empty. A bad expression should be a 400 that quotes it.
func TestAdversary_NeverFiringScheduleAcceptedForTokenWithoutExp(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tok := makeJWT(t, jwt.MapClaims{"sub": "api-user", "iat": env.clock.now().Unix()})
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": tok, "url": env.srv.URL, "verify_connection": false, "rotation_schedule": "0 0 30 2 *"})
	if err == nil && !resp.IsError() {
		cfg := env.readConfig(t)
		t.Fatalf("rotation_schedule \"0 0 30 2 *\" (never fires) accepted: next_rotation_at %q, next_rotation_reason %q, disable_automated_rotation %v",
			cfg["next_rotation_at"], cfg["next_rotation_reason"], cfg["disable_automated_rotation"])
	}
}

// --- (2) refreshes outside the operator's schedule ------------------------------------------

// Issue 11's reason for rotation_schedule: a rotation whose answer is lost needs inabit support,
// so operators want rotations only when people are at work ("0 10 * * 2"). A manual rotate-root
// on Friday night that inabit declines (429, nothing applied) bumps rotation_failures, and
// plannedRotation's backoff branch then makes the periodic tick send refreshes at 23:01, 23:03,
// 23:07, ... all weekend, although no slot is due and the token is far from expiry.
func TestAdversary_FailedRotateRootMakesTicksRefreshOutsideSchedule(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.clock.advance(time.Until(time.Date(2027, 3, 5, 23, 0, 0, 0, time.UTC))) // a Friday, 23:00 UTC
	env.mock.IssueLoginToken()                                                  // a token minted on that clock
	env.configure(t, map[string]interface{}{"rotation_schedule": "0 10 * * 2"})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429,
		ContentType: "application/json", Body: `{"errors":[{"message":"rate limited"}]}`, Times: 1})
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("setup: rotate-root succeeded")
	}
	cfg := env.readConfig(t)
	t.Logf("after the failed rotate-root: next_rotation_at %v (%v)", cfg["next_rotation_at"], cfg["next_rotation_reason"])
	for i := 0; i < 3; i++ {
		env.clock.advance(5 * time.Minute)
		env.tickOK(t)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("%d periodic refreshes sent on Friday night with rotation_schedule \"0 10 * * 2\" (next slot Tuesday 10:00) after one failed manual rotate-root",
			got-1)
	}
}

// --- (1) status that does not match storage -------------------------------------------------

// The refresh's outcome is unknown (inabit swallowed it), and the status write that records it
// fails. Storage says "outcome unknown, checked again at" (the in-flight mark), but the active
// node keeps serving its cached, healthy config: config reads show no error and the old
// next_rotation_at, and token reads carry no warning, while no refresh may be sent for 10m.
func TestAdversary_FailedStatusWriteLeavesActiveNodeReportingHealthy(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	env.readConfig(t) // the active node serves config from its cache
	env.storage.failPutsAfter(configStorageKey, 1)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Times: 1})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	env.storage.failPutsTo(configStorageKey, false)
	stored := storedConfig(t, env).LastRotationError
	if !strings.Contains(stored, "outcome unknown") || walCount(t, env) != 1 {
		t.Fatalf("setup: stored status %q, WAL entries %d", stored, walCount(t, env))
	}
	cfg := env.readConfig(t)
	warnings := env.readToken(t).Warnings
	if s, _ := cfg["last_rotation_error"].(string); !strings.Contains(s, "outcome unknown") {
		t.Fatalf("storage says %q but config read on the active node says last_rotation_error=%q, next_rotation_at=%v; token read warnings %q",
			stored, s, cfg["next_rotation_at"], warnings)
	}
}

// --- contract: a 403 that IS a GraphQL answer -------------------------------------------------

// contract.md: a "GraphQL JSON errors-only answer at HTTP 200/4xx (inabit's own answer)" is a
// definite "not applied" (WAL deleted at once); only "any 403 that is not a GraphQL answer"
// is ambiguous. inabitapi's statusError maps every 401/403 that is not an auth error to ErrRefused without
// Answered, so a 403 GraphQL answer blocks the mount for refresh_grace_period as "unknown".
func TestAdversary_GraphQLAnswerAtHTTP403IsTreatedAsUnknown(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, ContentType: "application/json",
		Body: `{"data":null,"errors":[{"message":"refresh not allowed from this network","extensions":{"code":"BAD_REQUEST"}}]}`, Times: 1})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if n := walCount(t, env); n != 0 || strings.Contains(rotationStatus(t, env), "outcome unknown") {
		t.Fatalf("inabit's own GraphQL answer at HTTP 403: WAL entries %d, status %q (rotate-root: %v); want the WAL deleted and no \"outcome unknown\"",
			n, rotationStatus(t, env), err)
	}
}

// --- (3) a token echoed in a 400 -----------------------------------------------------------

// A login_token sent with the wrong JSON type (an object, as a botched script or an HCL file
// would send) is refused by ValidateStrict with the SDK's conversion error, which quotes the
// value: the token comes back in the error (and whatever logs the response).
func TestAdversary_LoginTokenOfWrongTypeIsEchoedInThe400(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	tok := env.mock.LoginToken()
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
		"login_token": map[string]interface{}{"value": tok}, "url": env.srv.URL})
	msg := ""
	if err != nil {
		msg = err.Error()
	} else if resp != nil && resp.IsError() {
		msg = resp.Error().Error()
	}
	if strings.Contains(msg, strings.SplitN(tok, ".", 3)[1]) {
		t.Fatalf("the 400 for a login_token of the wrong type quotes the token: %q", inabitapi.Redact(msg))
	}
}

// --- (2) a restart forgets that inabit rejected the token ------------------------------------

// inabit rejected the refresh (UNAUTHENTICATED) and the probe met a WAF page. The stored status
// promises "no refresh is sent with it until inabit confirms it works", and on this node that
// holds. But the rejection lives only in memory (b.rejectedToken): after a plugin restart the
// next tick sends a refresh with the token inabit said is dead, as the status promised not to.
func TestAdversary_RestartForgetsRejectionAndRefreshesDeadToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.IssueLoginToken() // the stored token was revoked outside Vault
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, ContentType: "text/html",
		Body: "<html><title>403 Forbidden</title></html>"})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	status := rotationStatus(t, env)
	if !strings.Contains(status, "no refresh is sent with it") {
		t.Fatalf("setup: rotate-root %v; status %q", err, status)
	}
	env.clock.advance(5 * time.Minute)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("setup: the same node refreshed the rejected token (%d refreshes)", got)
	}

	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil)
	env.clock.advance(10 * time.Minute)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("after a plugin restart a tick sent a refresh with the token inabit rejected, while the stored status said %q", status)
	}
}

// --- (5) a proxy page can panic the plugin --------------------------------------------------

// inabitapi's bodyHint finds "<title>" in strings.ToLower(body) and slices the ORIGINAL body with that index.
// ToLower turns every invalid UTF-8 byte into U+FFFD (3 bytes), so for a Latin-1 error page the
// index is past the end of the body: slice bounds out of range. The panic happens inside
// rotateLocked while loginMu is write-locked (no defer), in a refresh whose outcome is unknown;
// on the token-read path it happens in singleflight's goroutine and takes the process down.
func TestAdversary_Latin1ProxyPagePanics(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	page := "<html><head><meta name=\"description\" content=\"Acc\xe8s refus\xe9: requ\xeate bloqu\xe9e par le syst\xe8me de s\xe9curit\xe9 r\xe9seau d\xe9di\xe9\">" +
		"<title>502</title></html>"
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 502,
		ContentType: "text/html; charset=iso-8859-1", Body: page, Times: 1})
	var panicked interface{}
	func() {
		defer func() { panicked = recover() }()
		_, _ = env.request(logical.UpdateOperation, "rotate-root", nil)
	}()
	if panicked != nil {
		locked := !env.b.loginMu.TryLock()
		if !locked {
			env.b.loginMu.Unlock()
		}
		t.Fatalf("rotate-root panicked on a Latin-1 502 page: %v (loginMu left write-locked: %v)", panicked, locked)
	}
}

// --- (1) clock skew between nodes -----------------------------------------------------------

// A WAL entry's age is judged by comparing the writer's StartedAt with the settling node's own
// clock. A node whose clock runs ahead by more than refresh_grace_period (>= 30s is allowed)
// settles another node's entry while that node's refresh is still being applied: the probe says
// "alive", the entry is deleted and the status cleared; then inabit applies the refresh. The old
// active node (stepped down) cannot save the answer, and the cluster says healthy over a dead
// token. Here node B's clock is 40s ahead; inabit applies A's refresh 3s after receiving it.
func TestAdversary_NodeClockAheadSettlesARefreshStillBeingApplied(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1, "refresh_grace_period": 30})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 3 * time.Second, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil) // A gives up after 1s
	if s := rotationStatus(t, env); !strings.Contains(s, "outcome unknown") {
		t.Fatalf("setup: rotate-root %v, status %q", err, s)
	}
	// A steps down; B, whose clock is 40s ahead of A's, becomes active and ticks at once.
	nodeB := newNode(t, env, nil)
	nodeB.now = func() time.Time { return env.clock.now().Add(40 * time.Second) }
	if _, err := nodeB.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}); err != nil {
		t.Logf("node B tick: %v", err)
	}
	settled := walCount(t, env) == 0
	if !env.mock.WaitIdle(10 * time.Second) {
		t.Fatal("the delayed refresh never finished")
	}
	stored := storedConfig(t, env)
	if settled && !env.mock.LoginTokenValid(stored.LoginToken) && !stored.LoginTokenLost && stored.LastRotationError == "" {
		t.Fatalf("node B (clock +40s, refresh_grace_period 30s) settled node A's entry ~1s after A's refresh timed out, "+
			"while inabit was still applying it: the stored token is now dead, the status is clean (%q), login_token_lost %v, no WAL entry left",
			stored.LastRotationError, stored.LoginTokenLost)
	}
}

// --- (2) Retry-After on a refresh is ignored -------------------------------------------------

// inabit answers the refresh with 429 and "Retry-After: 3600". Nothing was applied, and the
// plugin knows inabit wants an hour; the backoff (1m) sends the next refresh two minutes later.
func TestAdversary_RefreshRetryAfterIsIgnored(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "3600",
		ContentType: "application/json", Body: `{"errors":[{"message":"too many refreshes, retry in an hour"}]}`, Times: 1})
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("setup: rotate-root succeeded")
	}
	next := env.readConfig(t)["next_rotation_at"]
	env.clock.advance(2 * time.Minute)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("inabit said Retry-After: 3600 to a refresh; a tick sent another refresh 2 minutes later (next_rotation_at was %v)", next)
	}
}

// --- (4) a write that does not touch the schedule is refused for it --------------------------

// inabit starts minting 2-hour login tokens (SetTTLs); rotation_period stays 360h, which the
// contract handles (next rotation = min(born + period, exp - margin)). From then on every config
// write -- here only access_token_min_ttl -- is a 400 about rotation_period, a field the
// request did not carry.
func TestAdversary_UnrelatedConfigWriteRefusedForRotationPeriod(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.SetTTLs(2*time.Hour, 0)
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"access_token_min_ttl": "5m"})
	if err != nil || resp.IsError() {
		msg := ""
		if err != nil {
			msg = err.Error()
		} else {
			msg = resp.Error().Error()
		}
		t.Fatalf("a write of access_token_min_ttl alone was refused: %s", msg)
	}
}
