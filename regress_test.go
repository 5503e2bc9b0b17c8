package inabit

// Regression tests for issue 8, one (or a few) per defect. Each failed on the code before the
// fix; /work/contract.md says what the fixed code does. They use only requests, storage, the
// mock's state, logs and events, so they compile against the old and the new code alike.

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// --- Defect 1: a caller that goes away strands the new token in memory ---------------------

func TestDefect1_RotateRootCallerGoneAfterRefresh(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	old := env.mock.LoginToken()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The client hangs up right after inabit answered: at the first save of the new token.
	vs := &vaultStorage{Storage: env.storage, onConfigPut: cancel}
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vs})
	t.Logf("rotate-root with the caller gone: resp=%v err=%v", resp, err)

	if env.mock.LoginTokenValid(old) {
		t.Fatal("setup: inabit did not refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("the caller hung up after inabit answered and the new token is not in storage (stored token live at inabit: %v)",
			env.mock.LoginTokenValid(got))
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left after a rotation whose caller hung up", n)
	}
	if s := storedConfig(t, env).LastRotationError; s != "" {
		t.Fatalf("stored status = %q, want clean", s)
	}
}

func TestDefect1_PeriodicTickDeadlinePassesDuringRefresh(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h"})
	old := env.mock.LoginToken()
	env.clock.advance(time.Hour + time.Minute)
	// inabit answers after 1s; Vault's deadline on the periodic call is 500ms.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: time.Second, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	vs := &vaultStorage{Storage: env.storage}
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.RollbackOperation, Storage: vs})
	t.Logf("tick past its deadline: resp=%v err=%v", resp, err)

	if env.mock.Calls(mockinabit.OpRefresh) != 1 || env.mock.LoginTokenValid(old) {
		t.Fatal("setup: the tick did not refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("the tick's deadline passed after inabit answered and the new token is not in storage (stored token live at inabit: %v)",
			env.mock.LoginTokenValid(got))
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left", n)
	}
}

// --- Defect 2: a partial GraphQL answer carrying the new token is thrown away ---------------

func TestDefect2_PartialAnswerKeepsNewToken(t *testing.T) {
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

// --- Defect 3: the probe races a refresh inabit is still applying ---------------------------

func TestDefect3_RefreshAppliedAfterTimeoutIsOutcomeUnknownThenLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	orig := env.mock.LoginToken()
	env.mock.ResetCalls()
	// We give up after 1s; inabit applies the refresh at 2s.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 2 * time.Second, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	s := rotationStatus(t, env)
	if !strings.Contains(s, "outcome unknown") || !strings.Contains(s, "checked again at") {
		t.Fatalf("status right after a timed-out refresh = %q, want \"outcome unknown … checked again at\"", s)
	}
	if n := walCount(t, env); n != 1 {
		t.Fatalf("WAL entries = %d, want 1 (the outcome unknown)", n)
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 0 {
		t.Fatalf("%d probes sent while inabit may still be applying the refresh", got)
	}

	if !env.mock.WaitIdle(10 * time.Second) {
		t.Fatal("the delayed refresh never finished")
	}
	if env.mock.LoginTokenValid(orig) {
		t.Fatal("setup: inabit did not apply the delayed refresh")
	}
	// Before the grace period ends, nothing is sent.
	_, err = env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if err == nil {
		t.Fatal("a second rotate-root inside the grace period succeeded")
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d, want 1 (no new refresh while the outcome unknown)", got)
	}

	env.clock.advance(pastGrace)
	env.tick(t)
	if s := rotationStatus(t, env); !strings.HasPrefix(s, "LOGIN TOKEN LOST") {
		t.Fatalf("status after the grace period = %q, want LOGIN TOKEN LOST", s)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
}

func TestDefect3_RefreshNeverAppliedIsSettledAfterGrace(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	env.mock.ResetCalls()
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	if !env.mock.WaitIdle(10 * time.Second) {
		t.Fatal("the swallowed refresh is still held")
	}
	s := rotationStatus(t, env)
	if n := walCount(t, env); n != 1 || !strings.Contains(s, "outcome unknown") {
		t.Fatalf("after a swallowed refresh: WAL entries = %d, status = %q; want 1 and \"outcome unknown\"", n, s)
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if r, a := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken); r != 1 || a != 0 {
		t.Fatalf("a tick inside the grace period sent %d refreshes and %d probes, want 1 and 0", r, a)
	}

	env.clock.advance(pastGrace)
	env.tick(t)
	if s := rotationStatus(t, env); s != "" {
		t.Fatalf("status after the grace period = %q, want clean", s)
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("WAL entries = %d after the grace period, want 0", n)
	}
	if !env.mock.LoginTokenValid(storedToken(t, env)) {
		t.Fatal("stored token is dead")
	}
}

// --- Defect 4: the schedule ignores exp -----------------------------------------------------

func TestDefect4_RotatedTokenShorterThanRotationPeriod(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil) // rotation_period 360h, a 30-day token
	env.mock.SetTTLs(2*time.Hour, 0)
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	cfg := env.readConfig(t)
	iat := parseTimeField(t, "login_token_issued_at", cfg["login_token_issued_at"])
	exp := parseTimeField(t, "login_token_expires_at", cfg["login_token_expires_at"])
	next := parseTimeField(t, "next_rotation_at", cfg["next_rotation_at"])
	margin := min(24*time.Hour, exp.Sub(iat)/4)
	if next.After(exp.Add(-margin)) {
		t.Fatalf("next_rotation_at = %s, want at or before exp - %s = %s (the token expires at %s)",
			formatTime(next), margin, formatTime(exp.Add(-margin)), formatTime(exp))
	}

	rotated := storedToken(t, env)
	env.clock.advance(next.Sub(env.clock.now()) + time.Second)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 2 {
		t.Fatalf("refresh calls = %d at next_rotation_at, want 2", got)
	}
	if got := storedToken(t, env); got == rotated || !env.mock.LoginTokenValid(got) {
		t.Fatal("the short-lived token was not rotated before it expired")
	}
}

func TestDefect4_TokenWithExpButNoIat(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	born := env.clock.now()
	exp := born.Add(2 * time.Hour).Truncate(time.Second)
	tok := makeJWT(t, jwt.MapClaims{"sub": "api-user", "exp": exp.Unix()})
	// 105m passes any "shorter than the token's life" check, yet ends after exp - margin (90m).
	env.configure(t, map[string]interface{}{"login_token": tok, "verify_connection": false, "rotation_period": "105m"})
	next := parseTimeField(t, "next_rotation_at", env.readConfig(t)["next_rotation_at"])
	margin := min(24*time.Hour, exp.Sub(born)/4)
	if !next.Before(exp) || next.After(exp.Add(-margin+time.Second)) {
		t.Fatalf("token with exp %s and no iat: next_rotation_at = %s, want at or before exp - %s = %s",
			formatTime(exp), formatTime(next), margin.Round(time.Second), formatTime(exp.Add(-margin)))
	}
}

func TestDefect4_TokenReadWarnsLifetimeShorterThanRotationPeriod(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "200h"})
	// 100h: shorter than rotation_period, longer than the 72h "expires soon" window.
	env.mock.SetTTLs(100*time.Hour, 0)
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	// The mount is healthy and the token far from expiry: a warning can only be about its lifetime.
	warnings := env.readToken(t).Warnings
	for _, w := range warnings {
		if strings.Contains(strings.ToLower(w), "rotation") {
			return
		}
	}
	t.Fatalf("token read warnings = %q, want one saying the login token lives shorter than rotation_period", warnings)
}

// --- Defect 5: LOGIN TOKEN LOST is overwritten a minute later -------------------------------

func TestDefect5_LostIsStickyUntilNewLoginToken(t *testing.T) {
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

// --- Defect 6: a WAF or proxy page is taken for a dead token --------------------------------

func TestDefect6_WAFPagesAreNotLost(t *testing.T) {
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

// --- Defect 7: young WALs of another node are settled ---------------------------------------

func TestDefect7_YoungWALOfAnotherNodeBlocksRotation(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	putWAL(t, env, storedToken(t, env), env.clock.now().Add(-30*time.Second))
	env.mock.ResetCalls()

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if r, a := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken); r != 0 || a != 0 {
		t.Fatalf("rotate-root beside another node's 30s-old rotation sent %d refreshes and %d probes, want none (err %v)", r, a, err)
	}
	if err == nil {
		t.Fatal("rotate-root beside another node's rotation in flight succeeded")
	}
	env.tick(t)
	if n := walCount(t, env); n != 1 {
		t.Fatalf("a tick deleted another node's young WAL entry (%d left)", n)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 || env.mock.Calls(mockinabit.OpAccessToken) != 0 {
		t.Fatal("a tick called inabit beside another node's rotation in flight")
	}
}

func TestDefect7_StatusWriteNeverOverwritesANewerToken(t *testing.T) {
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

// --- Defect 8: a config write while a rotated token is unsaved ------------------------------

func TestDefect8_ConfigWriteSavesUnsavedTokenCleanly(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	live := env.mock.LoginToken()
	if storedToken(t, env) == live {
		t.Fatal("setup: storage accepted the rotated token")
	}
	env.storage.failPutsTo(configStorageKey, false)
	if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": "100h"}); err != nil {
		t.Fatal(err)
	}
	if storedToken(t, env) != live {
		t.Fatal("the config write did not save the live token")
	}
	cfg := env.readConfig(t)
	if fmt.Sprint(cfg["rotation_failures"]) != "0" || cfg["last_rotation_error"] != "" {
		t.Fatalf("after the config write: rotation_failures = %v, last_rotation_error = %q; want 0 and empty",
			cfg["rotation_failures"], cfg["last_rotation_error"])
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left after the rotated token was saved", n)
	}
	env.clock.advance(time.Minute + time.Second)
	env.tickOK(t)
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d a minute after the save, want 1 (no extra rotation)", got)
	}
}

// --- Defect 9: Clean during a rotation in flight --------------------------------------------

func TestDefect9_CleanWaitsForRotationInFlight(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: time.Second, Times: 1})
	vs := &vaultStorage{Storage: env.storage}

	done := make(chan error, 1)
	go func() {
		_, err := env.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vs})
		done <- err
	}()
	waitFor(t, "the refresh to reach inabit", func() bool { return env.mock.Calls(mockinabit.OpRefresh) == 1 })
	env.b.Cleanup(context.Background())
	vs.close() // the plugin is stopped: its storage is gone
	t.Logf("rotate-root: %v", <-done)

	if got := storedToken(t, env); got != env.mock.LoginToken() {
		loud := strings.Contains(env.logs.String(), "never saved to storage")
		t.Fatalf("Clean returned during a rotation in flight and the new token never reached storage (loud log line: %v)", loud)
	}
}

// --- Defect 10: replication -----------------------------------------------------------------

func TestDefect10_WALPrefixIsLocalStorage(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	for _, p := range env.b.SpecialPaths().LocalStorage {
		if p == framework.WALPrefix {
			return
		}
	}
	t.Fatalf("LocalStorage = %q, want it to hold %q", env.b.SpecialPaths().LocalStorage, framework.WALPrefix)
}

func TestDefect10_WALRollbackIsNoOpOnPerformanceStandby(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	putWAL(t, env, storedToken(t, env), env.clock.now().Add(-time.Hour))
	env.mock.IssueLoginToken() // whatever happened, a standby must not be the one to find out
	env.mock.ResetCalls()

	standby := newNode(t, env, func(c *logical.BackendConfig) {
		sv := logical.TestSystemView()
		sv.ReplicationStateVal = consts.ReplicationPerformanceStandby
		c.System = sv
	})
	ids, err := framework.ListWAL(context.Background(), env.storage)
	if err != nil || len(ids) != 1 {
		t.Fatalf("WAL: %v %v", ids, err)
	}
	entry, err := framework.GetWAL(context.Background(), env.storage, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	err = standby.walRollback(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}, entry.Kind, entry.Data)
	t.Logf("walRollback on a performance standby: %v", err)
	if r, a := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken); r != 0 || a != 0 {
		t.Fatalf("walRollback on a performance standby called inabit (%d refreshes, %d probes)", r, a)
	}
	if s := storedConfig(t, env).LastRotationError; s != "" {
		t.Fatalf("walRollback on a performance standby wrote status %q", s)
	}
}

// --- Defect 11: clock skew ------------------------------------------------------------------

func TestDefect11_VaultClockAheadDoesNotDefeatCache(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{Now: time.Now}) // inabit keeps real time
	env.clock.advance(6 * time.Minute)                      // Vault is 6 minutes ahead
	env.configure(t, nil)
	env.mock.ResetCalls()
	for i := 0; i < 3; i++ {
		env.readToken(t)
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got > 1 {
		t.Fatalf("3 token reads within a second made %d upstream calls with Vault's clock 6m ahead, want at most 1", got)
	}
}

func TestDefect11_VaultClockBehindDoesNotOutliveToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{Now: time.Now})
	env.clock.advance(-3 * time.Minute) // Vault is 3 minutes behind
	env.configure(t, nil)
	resp := env.readToken(t)
	claims, err := parseClaims(resp.Data["access_token"].(string))
	if err != nil || claims.ExpiresAt.IsZero() {
		t.Fatalf("access token claims: %v", err)
	}
	limit := time.Until(claims.ExpiresAt) - leaseSafetyMargin + 2*time.Second // seconds resolution
	if resp.Secret.TTL > limit {
		t.Fatalf("lease TTL = %s with Vault's clock 3m behind, but the token really dies in %s (want TTL <= %s)",
			resp.Secret.TTL, time.Until(claims.ExpiresAt).Truncate(time.Second), limit.Truncate(time.Second))
	}
}

// --- Defect 12: tests that do not reach what they name --------------------------------------

// TestDefect12_CrashRecoveryRestartCallsWALRollback restarts the plugin (a new backend from
// Factory on the same storage) and calls its walRollback directly, as Vault does for an old entry.
func TestDefect12_CrashRecoveryRestartCallsWALRollback(t *testing.T) {
	cases := []struct {
		name     string
		crash    func(env *testEnv)
		wantLost bool
	}{
		{"died before calling inabit", func(*testEnv) {}, false},
		{"died after inabit applied, before persist", func(env *testEnv) { env.mock.IssueLoginToken() }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, nil)
			id := putWAL(t, env, storedToken(t, env), env.clock.now().Add(-time.Hour))
			tc.crash(env)
			env.b.Cleanup(context.Background()) // the old plugin process is gone
			env.b = newNode(t, env, nil)
			env.mock.ResetCalls()

			entry, err := framework.GetWAL(context.Background(), env.storage, id)
			if err != nil || entry == nil {
				t.Fatalf("WAL entry: %v %v", entry, err)
			}
			req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}
			// However old its stamp, the restarted node has just seen the entry: it waits out the
			// grace on its own clock first (a skewed writer's stamp proves nothing).
			if err := env.b.walRollback(context.Background(), req, entry.Kind, entry.Data); err == nil {
				t.Fatal("walRollback settled an entry this node saw for the first time")
			}
			if got := env.mock.Calls(mockinabit.OpAccessToken); got != 0 {
				t.Fatalf("%d probes of an entry inside its grace on this node's clock", got)
			}
			env.clock.advance(pastGrace)
			if err := env.b.walRollback(context.Background(), req, entry.Kind, entry.Data); err != nil {
				t.Fatalf("walRollback: %v", err)
			}
			if env.mock.Calls(mockinabit.OpAccessToken) == 0 {
				t.Fatal("walRollback did not ask inabit about the old token")
			}
			// Vault deletes an entry whose rollback succeeded.
			if err := framework.DeleteWAL(context.Background(), env.storage, id); err != nil {
				t.Fatal(err)
			}
			cfg := env.readConfig(t)
			s, _ := cfg["last_rotation_error"].(string)
			if tc.wantLost {
				if !strings.HasPrefix(s, "LOGIN TOKEN LOST") || cfg["login_token_lost"] != true {
					t.Fatalf("after recovery: status %q, login_token_lost %v; want LOGIN TOKEN LOST and true", s, cfg["login_token_lost"])
				}
			} else {
				if s != "" || cfg["login_token_lost"] == true {
					t.Fatalf("healthy recovery: status %q, login_token_lost %v", s, cfg["login_token_lost"])
				}
				if !env.mock.LoginTokenValid(storedToken(t, env)) {
					t.Fatal("stored token is dead")
				}
			}
			if env.mock.Calls(mockinabit.OpRefresh) != 0 {
				t.Fatal("recovery sent a refresh")
			}
			env.tickOK(t)
		})
	}
}

// TestDefect12_CreateOperationRunsExistenceCheck sends what Vault sends for a first write: an
// existence check (pathConfigExists), then a create operation.
func TestDefect12_CreateOperationRunsExistenceCheck(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	exists := func() bool {
		t.Helper()
		found, ok, err := env.b.HandleExistenceCheck(context.Background(), &logical.Request{Operation: logical.CreateOperation, Path: "config", Storage: env.storage})
		if err != nil || !found {
			t.Fatalf("existence check: found=%v err=%v", found, err)
		}
		return ok
	}
	if exists() {
		t.Fatal("config exists before the first write")
	}
	resp, err := env.requestOK(logical.CreateOperation, "config", map[string]interface{}{"login_token": env.mock.LoginToken(), "url": env.srv.URL})
	if err != nil {
		t.Fatalf("create: %v %v", resp, err)
	}
	if !exists() {
		t.Fatal("config does not exist after a create")
	}
	if storedToken(t, env) != env.mock.LoginToken() || env.mock.Calls(mockinabit.OpAccessToken) != 1 {
		t.Fatal("create did not verify and save the login token")
	}
	// A create without a login token on an empty mount must name the field.
	env2 := newTestEnv(t, mockinabit.Options{})
	resp, err = env2.request(logical.CreateOperation, "config", map[string]interface{}{"url": env2.srv.URL})
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "login_token") {
		t.Fatalf("create without login_token: %v %v", resp, err)
	}
	env.tickOK(t)
}
