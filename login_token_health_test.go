package inabit

// Regression tests of the never-lost round 3 (issue 15), each named by the behaviour it
// guarantees. Each failed on d1faa1c; the curated mutation that re-introduces its defect is named
// beside it (scripts/mutants/mutations.txt), so `make mutants` keeps proving the test can fail.

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// forceFetch makes every read fetch a new access token (min TTL = the token's life).
var forceFetch = map[string]interface{}{"access_token_min_ttl": "15m"}

func (e *testEnv) readTokenErr() error {
	resp, err := e.request(logical.ReadOperation, "token", nil)
	if err == nil && resp.IsError() {
		err = resp.Error()
	}
	return err
}

// 15.5 (mutation confirm-read-rejection-skipped): a token inabit rejects on reads (revoked at
// inabit) is stored as LOST, with the event and the warnings, within two ticks.
func TestReadsSeeingInabitRejectTheTokenReportLostWithinTwoTicks(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.IssueLoginToken() // support rotated it outside Vault: the stored token is dead
	if err := env.readTokenErr(); err == nil {
		t.Fatal("a read with a revoked token succeeded")
	}
	env.tick(t) // the same second: one answer might be a glitch
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true {
		t.Fatal("LOST recorded on one answer")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	cfg := env.readConfig(t)
	if cfg["login_token_lost"] != true || !strings.HasPrefix(cfg["last_rotation_error"].(string), "LOGIN TOKEN LOST") {
		t.Fatalf("a token inabit rejects twice is not reported: lost %v, status %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	if !regLostEventSent(env) {
		t.Fatal("no lost event")
	}
	if err := env.readTokenErr(); err == nil || !strings.Contains(err.Error(), "LOGIN TOKEN LOST") {
		t.Fatalf("reads after LOST: %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("a dead token was refreshed")
	}
}

// A rejection inabit takes back (the next answer issues a token) is not reported.
func TestOneRejectionThatInabitTakesBackIsNotLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "glitch", Times: 1})
	if err := env.readTokenErr(); err == nil {
		t.Fatal("setup: the glitch did not reach the read")
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if cfg := env.readConfig(t); cfg["login_token_lost"] == true || cfg["last_rotation_error"] != "" {
		t.Fatalf("a glitch was reported: %v %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	env.readToken(t)
}

// 15.9 (mutation unauthenticated-read-no-reread): a node that has not yet seen another node's
// rotation re-reads storage before telling a client to replace a token that works.
func TestNodeBehindAnotherNodesRotationRereadsStorageBeforeBlamingTheToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	behind := regNewBackend(t, env, nil)
	read := func(b *backend) (*logical.Response, error) {
		return b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage})
	}
	if resp, err := read(behind); err != nil || resp.IsError() {
		t.Fatalf("setup read: %v %v", resp, err)
	}
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	// behind has not been invalidated: its cached config still holds the old, now dead token.
	resp, err := read(behind)
	if err != nil || resp.IsError() {
		t.Fatalf("a node behind the rotation failed a read with a working stored token: %v %v", resp, err)
	}
	if !env.mock.AccessTokenValid(resp.Data["access_token"].(string)) {
		t.Fatal("served access token is not valid")
	}
}

// 15.4 (mutation access-cache-wall-clock): a wall-clock step backwards never makes an expired
// access token look fresh or gives it a long lease.
func TestBackwardClockStepNeverServesAnExpiredAccessToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, nil)
	first := env.readToken(t).Data["access_token"].(string)
	env.clock.advance(16 * time.Minute) // the token has expired
	env.clock.step(-2 * time.Hour)      // and the wall clock steps back two hours
	resp := env.readToken(t)
	if resp.Data["access_token"] == first {
		t.Fatal("served the expired access token after a backward clock step")
	}
	if resp.Secret.TTL > 15*time.Minute {
		t.Fatalf("lease TTL %s outlives a 15-minute token", resp.Secret.TTL)
	}
}

// 15.4 (mutation settle-by-wall-clock): a forward wall-clock step on the node that sent a refresh
// does not let it settle that refresh while inabit may still apply it.
func TestForwardClockStepNeverSettlesOwnRefreshEarly(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Times: 1})
	_, _ = env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	env.mock.WaitIdle(10 * time.Second)
	env.mock.ResetCalls()
	env.clock.step(3 * time.Hour)
	env.tick(t)
	if n, probes := walCount(t, env), env.mock.Calls(mockinabit.OpAccessToken); n != 1 || probes != 0 {
		t.Fatalf("after a forward clock step: WAL entries %d, probes %d; want 1 and 0 (the refresh may still be applied)", n, probes)
	}
	env.clock.advance(regPastGrace)
	env.tick(t)
	if n := walCount(t, env); n != 0 {
		t.Fatalf("not settled once the grace passed on this node's clock: %d WAL entries", n)
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
	env.b = regNewBackend(t, env, nil) // a restart forgets everything in memory
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(2 * time.Hour) // rotation is due
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
		if s := regStatus(t, env); s != "" {
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
		if s := regStatus(t, env); s == "" {
			t.Fatal("status healthy on a token inabit does not accept")
		}
		env.clock.advance(time.Minute)
		env.tick(t)
		if cfg := env.readConfig(t); cfg["login_token_lost"] != true {
			t.Fatalf("an unusable rotated token is not LOST after the next tick: %q", cfg["last_rotation_error"])
		}
	})
}

// 15.7 (mutation same-token-write-keeps-lost): writing the same, working login token again is
// verified and clears LOST and the status; the same dead token is refused and LOST stays.
func TestWritingTheSameWorkingTokenAgainClearsLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	cfg := regStoredConfig(t, env)
	cfg.Status = rotation.Status{LoginTokenLost: true, LastRotationError: "LOGIN TOKEN LOST: a gateway's 401, taken for inabit's", RotationFailures: 1}
	if err := putConfig(context.Background(), env.storage, cfg); err != nil {
		t.Fatal(err)
	}
	env.b.login.dropAll()
	env.mock.ResetCalls()
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": cfg.LoginToken}); err != nil {
		t.Fatal(err)
	}
	if env.mock.Calls(mockinabit.OpAccessToken) == 0 {
		t.Fatal("the token written again was not verified")
	}
	got := env.readConfig(t)
	if got["login_token_lost"] != false || got["last_rotation_error"] != "" || got["rotation_failures"] != 0 {
		t.Fatalf("status after writing the working token again: %v", got)
	}
	env.readToken(t)

	cfg = regStoredConfig(t, env)
	cfg.Status = rotation.Status{LoginTokenLost: true, LastRotationError: "LOGIN TOKEN LOST: real"}
	_ = putConfig(context.Background(), env.storage, cfg)
	env.b.login.dropAll()
	env.mock.IssueLoginToken()
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": cfg.LoginToken}); err == nil {
		t.Fatal("the same dead token was accepted")
	}
	if got := env.readConfig(t); got["login_token_lost"] != true {
		t.Fatal("a refused write cleared LOST")
	}
}

// 15.12 (mutation expiry-margin-ignores-tick): a login token too short-lived to be rotated in
// time is warned about at config write and on reads, and rotated at the first tick.
func TestTooShortLivedTokenIsWarnedAndRotatedAtOnce(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 150 * time.Second})
	resp, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken(), "url": env.srv.URL, "rotation_period": "1m"})
	if err != nil {
		t.Fatal(err)
	}
	if resp == nil || len(resp.Warnings) == 0 || !strings.Contains(resp.Warnings[0], "too short") {
		t.Fatalf("config write of a 150 s token: no warning (%v)", resp)
	}
	if w := env.readToken(t).Warnings; len(w) == 0 || !strings.Contains(strings.Join(w, " "), "too short") {
		t.Fatalf("token read: no warning (%v)", w)
	}
	env.clock.advance(30 * time.Second)
	env.tick(t)
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("a 150 s token was not rotated at the first tick")
	}
}

// 15.13 (mutation held-token-claimed-after-step-down): after a step-down in the middle of a
// rotation, rotate-root says the new token is gone, not that it is held on "the active node".
func TestRotateRootAfterStepDownSaysTheNewTokenIsGone(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&regHookTransport{base: http.DefaultTransport, onRefresh: func() {
		env.b.stopping.Store(true) // Vault's Clean starts: this node is stepping down
		env.storage.failPutsTo(configStorageKey, true)
	}})
	env.configure(t, nil)
	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil && !resp.IsError() {
		t.Fatalf("rotate-root answered success after a step-down lost the new token: %v", resp)
	}
	msg := ""
	if err != nil {
		msg = err.Error()
	} else {
		msg = resp.Error().Error()
	}
	if strings.Contains(msg, "held in memory") || !strings.Contains(msg, "stopped being the active node") {
		t.Fatalf("rotate-root after a step-down: %q", msg)
	}
}

// answerRewriter rewrites inabit's answers on their way back, as a proxy might; inabit itself
// applied the call.
type answerRewriter struct {
	base    http.RoundTripper
	rewrite func(body string) string
}

func (a *answerRewriter) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := a.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	body, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		return nil, err
	}
	out := a.rewrite(string(body))
	res.Body = io.NopCloser(strings.NewReader(out))
	res.ContentLength = int64(len(out))
	res.Header.Del("Content-Length")
	return res, nil
}

// Found by the simulation (seeds 9, 15, 109): a probe that finds the stored token dead, whose LOST
// storage refuses to record, is asked again by a tick once storage works, and LOST is recorded
// there, not only in the node's memory (whose reads then never ask inabit again).
func TestLostThatStorageRefusedIsRecordedByATickOnceStorageWorks(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "360h"})
	env.b.Cleanup(context.Background())
	env.b = regNewBackend(t, env, nil) // a restart: no proof of life, so rotate-root probes first
	env.mock.IssueLoginToken()         // revoked at inabit
	env.storage.failPutsTo(configStorageKey, true)
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("rotate-root with a revoked token succeeded")
	}
	if regStoredConfig(t, env).LoginTokenLost || env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("test setup: storage recorded LOST, or a refresh was sent")
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(time.Minute)
	env.tick(t)
	if st := regStoredConfig(t, env); !st.LoginTokenLost {
		t.Fatalf("LOST not recorded in storage once it worked: %q", st.LastRotationError)
	}
}
