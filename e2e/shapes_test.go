package e2e

// Issue 15 on the real Vault: inabit's odd answers (15.1, 15.2, 15.3), a gateway's 401 (15.6), a
// ten-year Retry-After (15.10), a token revoked at inabit (15.5), and the same token written
// again after a false LOST (15.7), each through the real core, the plugin process over gRPC and
// the mock as its own process. Vault's tick runs every second here.

import (
	"strings"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// freshToken writes a new live login token with settings every case here starts from.
func (e *env) freshToken(t *testing.T, extra map[string]interface{}) string {
	t.Helper()
	e.mock.ClearFaults()
	login := e.mock.IssueLoginToken()
	data := map[string]interface{}{"login_token": login, "url": e.mockURL, "request_timeout": 2, "refresh_grace_period": 30,
		"access_token_min_ttl": "15m", "rotation_period": "360h"}
	for k, v := range extra {
		data[k] = v
	}
	if _, err := e.client().Logical().Write(mountPath+"/config", data); err != nil {
		t.Fatalf("config write: %v", err)
	}
	return login
}

func (e *env) assertHealthyAndReadable(t *testing.T) {
	t.Helper()
	cfg := e.readConfig()
	if cfg["last_rotation_error"] != "" || cfg["login_token_lost"] != false {
		t.Fatalf("status not healthy: lost %v, %q", cfg["login_token_lost"], cfg["last_rotation_error"])
	}
	tok := e.readToken(e.client()).Data["access_token"].(string)
	if !e.mock.AccessTokenValid(tok) {
		t.Fatal("served access token is not valid at inabit")
	}
}

func TestOddAnswerShapesOnTheRealVault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})

	// 15.1-15.3: the refresh is applied and its answer carries the new token in an odd wrapping:
	// the token is kept, trimmed, and the status is healthy because the token works.
	for _, kind := range []mockctl.FaultKind{mockctl.FaultErrorsNotList, mockctl.FaultErrorsMessageNotString,
		mockctl.FaultBOM, mockctl.FaultLeadingSpace, mockctl.FaultTrailingNewline} {
		t.Run("token delivered with "+string(kind), func(t *testing.T) {
			old := e.freshToken(t, nil)
			e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: kind, Times: 1})
			if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); err != nil {
				t.Fatalf("rotate-root: %v", err)
			}
			if e.mock.LoginTokenValid(old) {
				t.Fatal("setup: the refresh was not applied")
			}
			e.assertHealthyAndReadable(t)
		})
	}

	// 15.6: a gateway's bare 401 is not inabit's word: on the refresh it may still be applied
	// (outcome unknown, never LOST); on reads it never makes the token LOST.
	t.Run("gateway 401 on the refresh", func(t *testing.T) {
		old := e.freshToken(t, nil)
		e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: mockctl.FaultGateway401, Times: 1})
		if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); err == nil {
			t.Fatal("rotate-root behind a gateway 401 succeeded")
		}
		cfg := e.readConfig()
		if cfg["login_token_lost"] != false || !strings.Contains(cfg["last_rotation_error"].(string), "outcome unknown") {
			t.Fatalf("after a gateway 401: lost %v, status %q; want outcome unknown", cfg["login_token_lost"], cfg["last_rotation_error"])
		}
		if !e.mock.LoginTokenValid(old) {
			t.Fatal("setup: the gateway's 401 killed the token")
		}
		e.readToken(e.client())
	})
	t.Run("gateway 401 on reads", func(t *testing.T) {
		e.freshToken(t, nil)
		e.mock.InjectFault(mockctl.OpAccessToken, mockctl.Fault{Kind: mockctl.FaultGateway401})
		if _, err := e.client().Logical().Read(mountPath + "/token"); statusOf(err) != 502 {
			t.Fatalf("read behind a gateway 401: %v, want 502", err)
		}
		time.Sleep(8 * time.Second) // several ticks, past the confirmation delay
		if cfg := e.readConfig(); cfg["login_token_lost"] != false {
			t.Fatalf("a gateway's 401 made the token LOST: %q", cfg["last_rotation_error"])
		}
		e.mock.ClearFaults()
		e.assertHealthyAndReadable(t)
	})

	// 15.10: a ten-year Retry-After holds automatic rotation back an hour at most.
	t.Run("ten-year Retry-After", func(t *testing.T) {
		e.freshToken(t, map[string]interface{}{"rotation_period": 60})
		e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: mockctl.FaultRetryAfterHuge, Times: 1})
		before := time.Now()
		if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); statusOf(err) != 502 {
			t.Fatalf("rotate-root answered with a 429: %v, want 502", err)
		}
		cfg := e.readConfig()
		next, err := time.Parse(time.RFC3339, cfg["next_rotation_at"].(string))
		if err != nil || next.After(before.Add(time.Hour+time.Minute)) || cfg["next_rotation_reason"] != "retry" {
			t.Fatalf("next rotation %v (%v) after a ten-year Retry-After; want within the hour, reason retry", cfg["next_rotation_at"], cfg["next_rotation_reason"])
		}
		e.freshToken(t, nil) // back to 360h before the minute is up
	})
}

// 15.5: a token revoked at inabit is reported LOST within seconds of ticks (a minute or two with
// Vault's default tick), with reads saying so.
func TestRevokedTokenIsReportedLostOnTheRealVault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"access_token_min_ttl": "15m"})
	e.mock.RevokeLoginToken()
	if _, err := e.client().Logical().Read(mountPath + "/token"); statusOf(err) != 502 {
		t.Fatalf("read with a revoked token: %v, want 502", err)
	}
	eventually(t, 30*time.Second, "LOST in the status", func() bool { return e.readConfig()["login_token_lost"] == true })
	_, err := e.client().Logical().Read(mountPath + "/token")
	if statusOf(err) != 502 || !strings.Contains(apiMessage(err), "LOGIN TOKEN LOST") {
		t.Fatalf("read after LOST: %v", err)
	}
	if e.mock.Calls(mockctl.OpRefresh) != 0 {
		t.Fatal("the revoked token was refreshed")
	}
}

// 15.7: a LOST that was wrong (inabit said UNAUTHENTICATED twice, then works again) is cleared by
// writing the same login token again, which is verified.
func TestSameTokenWrittenAgainClearsLostOnTheRealVault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"access_token_min_ttl": "15m"})
	login := e.mock.LoginToken()
	e.mock.InjectFault(mockctl.OpAccessToken, mockctl.Fault{Kind: mockctl.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "flaky", Times: 2})
	_, _ = e.client().Logical().Read(mountPath + "/token")
	eventually(t, 30*time.Second, "the false LOST", func() bool { return e.readConfig()["login_token_lost"] == true })
	if _, err := e.client().Logical().Write(mountPath+"/config", map[string]interface{}{"login_token": login}); err != nil {
		t.Fatalf("writing the same working token again: %v", err)
	}
	e.assertHealthyAndReadable(t)
}
