package inabit

// Edges of the protocol an adversarial review of the rotation refactor found (one glitch taken for
// LOST, a settle budget lowered under a refresh in flight, restarts faster than the grace, a
// suspended host, ...). Each test states the promise it checks; each failed when written (the
// commit that added it says on what). This file: rejections, LOST and verifying a token; settling
// and the expiry deadline are in protocol_edges_refresh_test.go, reads in
// protocol_edges_reads_test.go.

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

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
