package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// The ways issue 8 found to lose the login token, or to misreport it, each driven through the real
// core, the real plugin process over gRPC and the mock as a real GraphQL server.

// assertStoredTokenLive restarts the plugin process (so nothing held in memory survives) and
// checks that the token it reads from storage is inabit's live one.
func (e *env) assertStoredTokenLive(t *testing.T) {
	t.Helper()
	e.registerPlugin(t)
	eventually(t, 30*time.Second, "a token read after the plugin restarted", func() bool {
		_, err := e.client().Logical().Read(mountPath + "/token")
		return err == nil
	})
	if got := e.mock.Rejected(mockctl.OpAccessToken) + e.mock.Rejected(mockctl.OpRefresh); got != 0 {
		t.Fatalf("%d calls presented a dead token", got)
	}
}

func (e *env) lastRotationError() string {
	return fmt.Sprint(e.readConfig()["last_rotation_error"])
}

// Defect 1: the CLI's timeout or a Ctrl-C cancels the request while inabit is answering.
func TestCallerHangsUpDuringRotateRoot(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"request_timeout": 10})
	old := e.mock.LoginToken()
	e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: mockctl.FaultDelay, Delay: 3 * time.Second, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := e.client().Logical().WriteWithContext(ctx, mountPath+"/rotate-root", nil); err == nil {
		t.Fatal("the client was to give up before inabit answered")
	}
	e.mock.WaitIdle(10 * time.Second)
	eventually(t, 20*time.Second, "the rotation to finish without its caller", func() bool {
		return e.readConfig()["last_rotated_at"] != ""
	})
	if e.mock.LoginTokenValid(old) || e.lastRotationError() != "" {
		t.Fatalf("rotation did not complete cleanly: %q", e.lastRotationError())
	}
	e.assertStoredTokenLive(t)
}

// Defect 2: an answer with the new token and an errors[] entry.
func TestPartialRefreshAnswerKeepsToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: mockctl.FaultPartial, Code: "INTERNAL", Message: "audit log unavailable", Times: 1})
	if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); err != nil {
		t.Fatalf("rotate-root with a partial answer: %v", err)
	}
	e.assertStoredTokenLive(t)
	if !strings.Contains(e.logs.String(), "audit log unavailable") {
		t.Fatal("the answer's GraphQL error was not logged")
	}
}

// Defects 3 and 5: inabit applies a refresh after our client gave up. Nothing is probed or sent
// during refresh_grace_period; after it the loss is reported, and it stays reported: no refresh is
// sent with the dead token, rotate-root and reads answer with LOST, and only a new token clears it.
func TestLateRefreshReportedLostAndSticky(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"request_timeout": 1, "refresh_grace_period": 30})
	e.mock.InjectFault(mockctl.OpRefresh, mockctl.Fault{Kind: mockctl.FaultDelay, Delay: 2 * time.Second, Times: 1})

	_, err := e.client().Logical().Write(mountPath+"/rotate-root", nil)
	if statusOf(err) != 503 || !strings.Contains(apiMessage(err), "outcome unknown") {
		t.Fatalf("rotate-root whose answer never came: %v", err)
	}
	if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); statusOf(err) != 503 || !strings.Contains(apiMessage(err), "checked again at") {
		t.Fatalf("rotate-root inside the grace period: %v", err)
	}
	if got := e.mock.Calls(mockctl.OpRefresh); got != 1 {
		t.Fatalf("%d refreshes inside the grace period, want 1", got)
	}
	e.mock.WaitIdle(10 * time.Second)
	if !strings.Contains(e.lastRotationError(), "outcome unknown") {
		t.Fatalf("status inside the grace period: %q", e.lastRotationError())
	}

	eventually(t, 60*time.Second, "LOGIN TOKEN LOST after the grace period", func() bool {
		return strings.HasPrefix(e.lastRotationError(), "LOGIN TOKEN LOST")
	})
	if e.readConfig()["login_token_lost"] != true {
		t.Fatal("login_token_lost is not set")
	}
	// The backoff after one failure is 1m: the old code refreshed the dead token then.
	refreshes := e.mock.Calls(mockctl.OpRefresh)
	time.Sleep(65 * time.Second)
	if got := e.mock.Calls(mockctl.OpRefresh); got != refreshes {
		t.Fatalf("%d refreshes sent with a token known dead", got-refreshes)
	}
	if !strings.HasPrefix(e.lastRotationError(), "LOGIN TOKEN LOST") {
		t.Fatalf("LOST was overwritten: %q", e.lastRotationError())
	}
	if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); statusOf(err) != 502 || !strings.Contains(apiMessage(err), "LOGIN TOKEN LOST") {
		t.Fatalf("rotate-root with a lost token: %v", err)
	}
	if _, err := e.client().Logical().Read(mountPath + "/token"); statusOf(err) != 502 || !strings.Contains(apiMessage(err), "LOGIN TOKEN LOST") {
		t.Fatalf("token read with a lost token: %v", err)
	}
	e.configure(map[string]interface{}{"login_token": e.mock.IssueLoginToken()})
	if e.lastRotationError() != "" || e.readConfig()["login_token_lost"] != false {
		t.Fatal("a new login token did not clear LOST")
	}
	e.readToken(e.client())
}

// Defect 6: a WAF answers the refresh and the probe with 403 pages. That proves nothing about the
// token: the outcome stays unknown (never LOST) until inabit itself can be asked.
func TestWAFPageIsNotADeadToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"refresh_grace_period": 30, "request_timeout": 5})
	waf := mockctl.Fault{Kind: mockctl.FaultStatus, Status: 403, ContentType: "text/html", Body: "<html><title>403 Forbidden</title></html>"}
	e.mock.InjectFault(mockctl.OpRefresh, waf)
	e.mock.InjectFault(mockctl.OpAccessToken, waf)

	if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); statusOf(err) != 503 {
		t.Fatalf("rotate-root behind a WAF page: %v", err)
	}
	// Settled 5s + 2s + 30s after the refresh started.
	eventually(t, 120*time.Second, "the settle attempt after the grace period", func() bool {
		return strings.Contains(e.lastRotationError(), "cannot be asked")
	})
	if strings.Contains(e.lastRotationError(), "LOST") || e.readConfig()["login_token_lost"] != false {
		t.Fatalf("a WAF page was taken for a dead token: %q", e.lastRotationError())
	}
	e.mock.ClearFaults()
	eventually(t, 90*time.Second, "the unfinished rotation to be settled", func() bool { return e.lastRotationError() == "" })
	e.assertRotatesCleanly(t)
}
