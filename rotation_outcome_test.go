package inabit

// Tests of rotation_outcome.go: what the plugin concludes from a refresh's answer, a probe or a
// rejection, and the status it writes.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// A partial GraphQL answer (errors[] beside data) carrying the new token keeps the token and a
// clean status, and logs the error's message but no token (issue 8 defect 2: the token was thrown
// away).
func TestPartialAnswerWithNewTokenKeepsItAndLogsNoToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	old := env.mock.LoginToken()
	// The error message quotes a token, which must never reach a log line.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultPartial, Code: "INTERNAL_SERVER_ERROR",
		Message: "audit sink slow for request by " + old, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if env.mock.LoginTokenValid(old) {
		t.Fatal("setup: inabit did not apply the refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("a partial answer carried the new token but storage holds the old one (rotate-root err: %v; status: %q)",
			err, storedConfig(t, env).LastRotationError)
	}
	if err != nil {
		t.Fatalf("rotate-root with a partial answer: %v", err)
	}
	if s := rotationStatus(t, env); s != "" {
		t.Fatalf("status = %q, want clean", s)
	}
	logs := env.logs.String()
	if !strings.Contains(logs, "audit sink slow") {
		t.Fatalf("the partial answer's error message was not logged:\n%s", logs)
	}
	if strings.Contains(logs, old) || strings.Contains(logs, env.mock.LoginToken()) {
		t.Fatal("a token reached the logs")
	}
}

// LOGIN TOKEN LOST stays, and neither ticks, rotate-root nor token reads call inabit with the
// dead token, until a new login token is written (issue 8 defect 5: LOST was overwritten a minute
// later).
func TestLostStaysAndCallsNothingUntilANewLoginToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDropAfterApply, Times: 1})
	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	if !strings.HasPrefix(rotationStatus(t, env), "LOGIN TOKEN LOST") {
		// A dropped answer is ambiguous: settled after the grace period.
		env.clock.advance(pastGrace)
		env.tick(t)
	}
	if s := rotationStatus(t, env); !strings.HasPrefix(s, "LOGIN TOKEN LOST") {
		t.Fatalf("setup: status = %q, want LOGIN TOKEN LOST", s)
	}
	refreshes, probes := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken)

	var elapsed time.Duration
	for d := time.Minute; d <= 2*time.Hour; d *= 2 {
		env.clock.advance(d)
		elapsed += d
		env.tick(t)
		if got := env.mock.Calls(mockinabit.OpRefresh); got != refreshes {
			t.Fatalf("%s after LOST: %d refreshes sent with a token known to be dead; status now %q", elapsed, got-refreshes, rotationStatus(t, env))
		}
		if got := env.mock.Calls(mockinabit.OpAccessToken); got != probes {
			t.Fatalf("%s after LOST: a tick called inabit %d times", elapsed, got-probes)
		}
		if s := rotationStatus(t, env); !strings.HasPrefix(s, "LOGIN TOKEN LOST") {
			t.Fatalf("%s after LOST: status = %q", elapsed, s)
		}
	}
	cfg := env.readConfig(t)
	if cfg["login_token_lost"] != true || cfg["next_rotation_at"] != "" {
		t.Fatalf("config read while lost: login_token_lost = %v, next_rotation_at = %v; want true and empty", cfg["login_token_lost"], cfg["next_rotation_at"])
	}

	_, err = env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("rotate-root while lost: err = %v, want the LOST message", err)
	}
	_, err = env.requestOK(logical.ReadOperation, "token", nil)
	if err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("token read while lost: err = %v, want the LOST message", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != refreshes || env.mock.Calls(mockinabit.OpAccessToken) != probes {
		t.Fatal("rotate-root or a token read called inabit with a token known to be dead")
	}

	env.mock.IssueLoginToken()
	env.configure(t, nil) // writes the new login token
	cfg = env.readConfig(t)
	if cfg["last_rotation_error"] != "" || cfg["login_token_lost"] == true {
		t.Fatalf("after a new login token: %v", cfg)
	}
	env.readToken(t)
}

// WAF 403 pages answering the refresh and every probe never make the token LOST: the outcome stays
// unknown (issue 8 defect 6: such a page was taken for a dead token).
func TestWAFPagesNeverMakeTheTokenLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	waf := mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 403, ContentType: "text/html",
		Body: "<html><title>403 Forbidden</title><body>Request blocked</body></html>"}
	env.mock.InjectFault(mockinabit.OpAccessToken, waf) // every probe, for good
	once := waf
	once.Times = 1
	env.mock.InjectFault(mockinabit.OpRefresh, once)

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	check := func(when, want string) {
		t.Helper()
		cfg := env.readConfig(t)
		s, _ := cfg["last_rotation_error"].(string)
		if strings.Contains(s, "LOGIN TOKEN LOST") || cfg["login_token_lost"] == true || lostEventSent(env) {
			t.Fatalf("%s: a WAF page was taken for a dead token: status %q, login_token_lost %v, lost event %v",
				when, s, cfg["login_token_lost"], lostEventSent(env))
		}
		if n := walCount(t, env); n != 1 || !strings.Contains(s, want) {
			t.Fatalf("%s: WAL entries = %d, status = %q; want 1 and %q", when, n, s, want)
		}
	}
	check("after rotate-root", "outcome unknown")
	env.clock.advance(pastGrace)
	env.tick(t)
	check("after the grace period, probe answered by the WAF", "unknown")
	if !env.mock.LoginTokenValid(storedToken(t, env)) {
		t.Fatal("setup: the stored token died")
	}
}

// A status write never replaces a newer token another node saved meanwhile, nor calls it LOST
// (issue 8 defect 7).
func TestStatusWriteNeverOverwritesANewerToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	var otherNodes string
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		// While our refresh is on the wire, another node saves a token it got from inabit.
		cfg, err := readConfig(context.Background(), env.storage)
		if err != nil || cfg == nil {
			t.Errorf("other node: %v", err)
			return
		}
		otherNodes = env.mock.IssueLoginToken()
		cfg.LoginToken = otherNodes
		cfg.LoginTokenStoredAt = env.clock.now()
		if err := putConfig(context.Background(), env.storage, cfg); err != nil {
			t.Errorf("other node: %v", err)
		}
	}})
	env.configure(t, nil)

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	if otherNodes == "" {
		t.Fatal("setup: no refresh was sent")
	}
	cfg := storedConfig(t, env)
	if cfg.LoginToken != otherNodes {
		t.Fatalf("a status write replaced the token another node saved (stored token live at inabit: %v; status %q)",
			env.mock.LoginTokenValid(cfg.LoginToken), cfg.LastRotationError)
	}
	if strings.Contains(cfg.LastRotationError, "LOGIN TOKEN LOST") {
		t.Fatalf("status says LOST while the stored token is live: %q", cfg.LastRotationError)
	}
}

// The refresh is applied and inabit's answer carries the new token in data, but the HTTP status
// is 500 (GraphQL servers commonly answer a partial result with 500, and gateways pass it on).
// Issue 8 defect 2: "a non-empty token in data.refreshApiUserLoginToken must be kept, whatever
// else the answer says": the token is stored. (The review found it thrown away, the outcome
// called unknown, and LOGIN TOKEN LOST declared after refresh_grace_period.)
func TestRefreshAnsweredWithTokenAtHTTP500KeepsTheToken(t *testing.T) {
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
// GraphQL spec leaves extensions free-form) keeps the token: "HTTP 200 with a non-empty string in
// data.refreshApiUserLoginToken -- EVEN IF the answer also carries errors[]". (The review found
// parseGraphQL failing to decode the number into a string Code, calling the whole answer "not
// GraphQL JSON" and throwing the token away.)
func TestPartialAnswerWithNumericErrorCodeKeepsTheToken(t *testing.T) {
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

// The refresh's outcome is unknown (inabit swallowed it), and the status write that records it
// fails. Storage says "outcome unknown, checked again at" (the in-flight mark), and so does a
// config read on the active node, which serves config from its cache. (The review found the cache
// still healthy: no error, the old next_rotation_at, token reads without a warning, while no
// refresh may be sent for 10m.)
func TestFailedStatusWriteNeverLeavesActiveNodeReportingHealthy(t *testing.T) {
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

// A "GraphQL JSON errors-only answer at HTTP 200/4xx (inabit's own answer)" is a definite "not
// applied" (WAL deleted at once); only "any 403 that is not a GraphQL answer" is ambiguous (the
// refresh outcomes of issue 8). (The review found inabitapi's statusError mapping every 401/403
// that is not an auth error to ErrRefused without Answered, so a 403 GraphQL answer blocked the
// mount for refresh_grace_period as "unknown".)
func TestGraphQLAnswerAtHTTP403IsADefiniteNotApplied(t *testing.T) {
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

// inabit rejected the refresh (UNAUTHENTICATED) and the probe met a WAF page. The stored status
// promises "no refresh is sent with it until inabit confirms it works", and that holds on this
// node and after a plugin restart. (The review found the rejection kept only in memory: after a
// restart the next tick sent a refresh with the token inabit said is dead.)
func TestRestartRemembersRejectionAndNeverRefreshesTheDeadToken(t *testing.T) {
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

// inabit answers the refresh with 429 and "Retry-After: 3600": nothing was applied, and no tick
// sends another refresh two minutes later. (The review found the 1m backoff winning over inabit's
// hour.)
func TestRefreshRetryAfterIsHonouredByTicks(t *testing.T) {
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

// 15.8 (mutation no-probe-before-refresh): a LOST that storage refused to record is not
// forgotten by a restart: the restarted node never refreshes the dead token.
func TestRestartNeverRefreshesATokenWhoseLostStorageRefused(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h", "access_token_min_ttl": "15m"})
	env.mock.IssueLoginToken() // revoked at inabit
	_ = env.readTokenErr()
	env.storage.failPutsTo(configStorageKey, true)
	env.clock.advance(time.Minute)
	env.tick(t) // confirms LOST, but storage refuses to record it
	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil) // a restart forgets everything in memory
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(2 * time.Hour) // rotation is due
	env.tick(t)
	env.clock.advance(time.Minute) // a restarted node's first rejection is one answer; the next tick's is the second
	env.tick(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 0 {
		t.Fatalf("the restarted node refreshed a token inabit had rejected (%d refreshes)", got)
	}
	if cfg := env.readConfig(t); cfg["login_token_lost"] != true {
		t.Fatalf("LOST not recorded once storage worked: %q", cfg["last_rotation_error"])
	}
}

// 15.3 (mutation rotated-token-not-trimmed / rotated-token-not-verified): a rotated token is
// trimmed, and a status says healthy only when inabit accepts the stored token.
func TestRotatedTokenIsTrimmedAndHealthyOnlyWhenInabitAcceptsIt(t *testing.T) {
	t.Run("trailing newline", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		env.b.newAPI = apiOver(&answerRewriter{base: http.DefaultTransport, rewrite: func(body string) string {
			if strings.Contains(body, "refreshApiUserLoginToken") {
				return strings.Replace(body, `"}}`, `\n"}}`, 1)
			}
			return body
		}})
		env.configure(t, nil)
		if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
			t.Fatal(err)
		}
		if tok := storedToken(t, env); tok != strings.TrimSpace(tok) || !env.mock.LoginTokenValid(tok) {
			t.Fatalf("stored token %q is not the live one, trimmed", tok)
		}
		if s := rotationStatus(t, env); s != "" {
			t.Fatalf("status %q", s)
		}
	})
	t.Run("inabit answers with a token it does not accept", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		env.b.newAPI = apiOver(&answerRewriter{base: http.DefaultTransport, rewrite: func(body string) string {
			if strings.Contains(body, "refreshApiUserLoginToken") {
				return `{"data":{"refreshApiUserLoginToken":"not-a-jwt"}}`
			}
			return body
		}})
		env.configure(t, nil)
		resp, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
		if err != nil || len(resp.Warnings) == 0 {
			t.Fatalf("rotate-root: %v warnings %v; want 200 with a warning", err, resp)
		}
		if s := rotationStatus(t, env); s == "" {
			t.Fatal("status healthy on a token inabit does not accept")
		}
		env.clock.advance(time.Minute)
		env.tick(t)
		if cfg := env.readConfig(t); cfg["login_token_lost"] != true {
			t.Fatalf("an unusable rotated token is not LOST after the next tick: %q", cfg["last_rotation_error"])
		}
	})
}

// A probe that finds the stored token dead, whose LOST
// storage refuses to record, is asked again by a tick once storage works, and LOST is recorded
// there, not only in the node's memory (whose reads then never ask inabit again).
func TestLostThatStorageRefusedIsRecordedByATickOnceStorageWorks(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "360h"})
	env.b.Cleanup(context.Background())
	env.b = newNode(t, env, nil) // a restart: no proof of life, so rotate-root probes first
	env.mock.IssueLoginToken()   // revoked at inabit
	env.storage.failPutsTo(configStorageKey, true)
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("rotate-root with a revoked token succeeded")
	}
	if storedConfig(t, env).LoginTokenLost || env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("test setup: storage recorded LOST, or a refresh was sent")
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(time.Minute)
	env.tick(t)
	if st := storedConfig(t, env); !st.LoginTokenLost {
		t.Fatalf("LOST not recorded in storage once it worked: %q", st.LastRotationError)
	}
}

// Mutation status-write-not-retried: storage that refuses a rotation's status write once and then
// recovers still ends up holding the status the rotation concluded, not the in-flight mark that
// says "outcome unknown" (which holds every refresh back until it is settled).
func TestStatusWriteRefusedOnceIsRetried(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		// The in-flight status is written; storage refuses the next config write, once.
		env.storage.refuseNextPuts(configStorageKey, 1)
	}})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "60",
		ContentType: "application/json", Body: `{"errors":[{"message":"too many refreshes"}]}`, Times: 1})
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("setup: rotate-root succeeded")
	}
	env.storage.mu.Lock()
	refused := env.storage.refuseNext[configStorageKey] == 0
	env.storage.mu.Unlock()
	if !refused {
		t.Fatal("setup: storage never refused the status write")
	}
	cfg := storedConfig(t, env)
	if cfg.RotationFailures != 1 || strings.Contains(cfg.LastRotationError, "outcome unknown") ||
		!strings.Contains(cfg.LastRotationError, "rate-limited") {
		t.Fatalf("storage refused the status write once; stored status: %d failures, %q", cfg.RotationFailures, cfg.LastRotationError)
	}
}
