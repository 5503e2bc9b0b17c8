package mockinabit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func post(t *testing.T, url, token, query string) (int, map[string]any) {
	t.Helper()
	body, _ := json.Marshal(map[string]string{"query": query})
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out
}

func TestRefreshKillsOldToken(t *testing.T) {
	m, srv := NewHTTPTest(Options{LoginTokenTTL: time.Hour, AccessTokenTTL: time.Minute})
	defer srv.Close()
	old := m.LoginToken()

	_, out := post(t, srv.URL, old, "query { getApiUserAccessToken }")
	access, _ := out["data"].(map[string]any)["getApiUserAccessToken"].(string)
	if !m.AccessTokenValid(access) || m.AccessTokenValid(old) {
		t.Fatalf("access token validity wrong: %v", out)
	}

	_, out = post(t, srv.URL, old, "query { refreshApiUserLoginToken }")
	fresh, _ := out["data"].(map[string]any)["refreshApiUserLoginToken"].(string)
	if fresh == "" || fresh == old || m.LoginTokenValid(old) || !m.LoginTokenValid(fresh) {
		t.Fatalf("refresh did not swap tokens: %v", out)
	}
	_, out = post(t, srv.URL, old, "query { getApiUserAccessToken }")
	errs, _ := out["errors"].([]any)
	if len(errs) != 1 || errs[0].(map[string]any)["extensions"].(map[string]any)["code"] != "UNAUTHENTICATED" {
		t.Fatalf("old token still accepted: %v", out)
	}
	if m.Calls(OpAccessToken) != 2 || m.Calls(OpRefresh) != 1 || m.Rejected(OpAccessToken) != 1 || m.Rejected(OpRefresh) != 0 {
		t.Fatalf("counts %d/%d rejected %d/%d", m.Calls(OpAccessToken), m.Calls(OpRefresh), m.Rejected(OpAccessToken), m.Rejected(OpRefresh))
	}
}

func TestFaultsApplyInOrderAndExpire(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	m.InjectFault(OpAccessToken, Fault{Kind: FaultStatus, Status: 503, Times: 2})
	m.InjectFault(OpAccessToken, Fault{Kind: FaultStatus, Status: 429, RetryAfter: "3", Times: 1})
	want := []int{503, 503, 429, 200}
	for i, w := range want {
		if got, _ := post(t, srv.URL, m.LoginToken(), "query { getApiUserAccessToken }"); got != w {
			t.Fatalf("call %d: status %d, want %d", i, got, w)
		}
	}
}

func TestExpiredLoginTokenRejected(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	m, srv := NewHTTPTest(Options{LoginTokenTTL: time.Minute, Now: clock})
	defer srv.Close()
	tok := m.LoginToken()
	now = now.Add(2 * time.Minute)
	if m.LoginTokenValid(tok) {
		t.Fatal("expired login token still valid")
	}
}

// postCtx is post with a context and no fatal on transport errors: it returns the error.
func postCtx(ctx context.Context, url, token, query string) (int, string, error) {
	body, _ := json.Marshal(map[string]string{"query": query})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	return res.StatusCode, string(raw), err
}

func drainApplied(m *Server) int {
	n := 0
	for {
		select {
		case <-m.Applied():
			n++
		default:
			return n
		}
	}
}

func TestDelayAppliesAfterClientGaveUp(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	old := m.LoginToken()
	m.InjectFault(OpRefresh, Fault{Kind: FaultDelay, Delay: 300 * time.Millisecond, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, _, err := postCtx(ctx, srv.URL, old, "query { refreshApiUserLoginToken }"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client call err = %v, want its deadline", err)
	}
	if !m.LoginTokenValid(old) {
		t.Fatal("applied before the delay passed")
	}
	if !m.WaitIdle(5 * time.Second) {
		t.Fatal("delayed handler still running")
	}
	if m.LoginTokenValid(old) || m.LoginToken() == old {
		t.Fatal("the server did not apply the refresh after its client hung up")
	}
	select {
	case op := <-m.Applied():
		if op != OpRefresh {
			t.Fatalf("applied op = %s", op)
		}
	default:
		t.Fatal("no Applied signal for the delayed refresh")
	}
}

func TestDelayAnswersAPatientClient(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	m.InjectFault(OpAccessToken, Fault{Kind: FaultDelay, Delay: 50 * time.Millisecond, Times: 1})
	_, out := post(t, srv.URL, m.LoginToken(), "query { getApiUserAccessToken }")
	access, _ := out["data"].(map[string]any)["getApiUserAccessToken"].(string)
	if !m.AccessTokenValid(access) {
		t.Fatalf("delayed answer = %v", out)
	}
	if drainApplied(m) != 1 {
		t.Fatal("want one Applied signal")
	}
}

func TestAppliedNeverBlocks(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	m.InjectFault(OpAccessToken, Fault{Kind: FaultPartial, Message: "m", Code: "C"})
	for i := 0; i < cap(m.appliedSignals)+5; i++ {
		if code, _ := post(t, srv.URL, m.LoginToken(), "query { getApiUserAccessToken }"); code != 200 {
			t.Fatalf("call %d: status %d", i, code)
		}
	}
	if n := drainApplied(m); n != cap(m.appliedSignals) {
		t.Fatalf("drained %d signals, want the buffer's %d", n, cap(m.appliedSignals))
	}
}

func TestHangNeverApplies(t *testing.T) {
	for _, tc := range []struct {
		name    string
		delay   time.Duration
		release bool
	}{
		{"client gives up", 0, false},
		{"delay passes", 100 * time.Millisecond, false},
		{"ClearFaults", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, srv := NewHTTPTest(Options{})
			defer srv.Close()
			old := m.LoginToken()
			m.InjectFault(OpRefresh, Fault{Kind: FaultHang, Delay: tc.delay, Times: 1})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if !tc.release && tc.delay == 0 {
				ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
			}
			if tc.release {
				go func() {
					time.Sleep(100 * time.Millisecond)
					m.ClearFaults()
				}()
			}
			start := time.Now()
			code, body, err := postCtx(ctx, srv.URL, old, "query { refreshApiUserLoginToken }")
			if err == nil {
				t.Fatalf("hung call answered %d %s", code, body)
			}
			if time.Since(start) > 4*time.Second {
				t.Fatal("hang outlived its release")
			}
			if !m.WaitIdle(5 * time.Second) {
				t.Fatal("hang handler still running")
			}
			if !m.LoginTokenValid(old) || m.Calls(OpRefresh) != 1 || drainApplied(m) != 0 {
				t.Fatal("a swallowed refresh was applied")
			}
		})
	}
}

func TestPartialAnswerCarriesDataAndErrors(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	old := m.LoginToken()
	m.InjectFault(OpRefresh, Fault{Kind: FaultPartial, Code: "INTERNAL", Message: "audit log unavailable", Times: 1})
	code, out := post(t, srv.URL, old, "query { refreshApiUserLoginToken }")
	fresh, _ := out["data"].(map[string]any)["refreshApiUserLoginToken"].(string)
	errs, _ := out["errors"].([]any)
	if code != 200 || fresh == "" || !m.LoginTokenValid(fresh) || m.LoginTokenValid(old) {
		t.Fatalf("partial answer did not carry the applied refresh: %d %v", code, out)
	}
	if len(errs) != 1 {
		t.Fatalf("errors = %v", out["errors"])
	}
	e := errs[0].(map[string]any)
	if e["message"] != "audit log unavailable" || e["extensions"].(map[string]any)["code"] != "INTERNAL" {
		t.Fatalf("error entry = %v", e)
	}
	if drainApplied(m) != 1 {
		t.Fatal("want one Applied signal")
	}
}

func TestWaitIdle(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	if !m.WaitIdle(0) {
		t.Fatal("a fresh mock is not idle")
	}
	m.InjectFault(OpAccessToken, Fault{Kind: FaultHoldAfterApply, Delay: 400 * time.Millisecond, Times: 1})
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _, _ = postCtx(context.Background(), srv.URL, m.LoginToken(), "query { getApiUserAccessToken }")
	}()
	<-m.Applied()
	if m.WaitIdle(50 * time.Millisecond) {
		t.Fatal("idle while an answer is held")
	}
	if !m.WaitIdle(5 * time.Second) {
		t.Fatal("not idle after the hold")
	}
	<-done
}

func TestSetLoginTokenTTL(t *testing.T) {
	m, srv := NewHTTPTest(Options{LoginTokenTTL: 30 * 24 * time.Hour})
	defer srv.Close()
	m.SetLoginTokenTTL(90 * time.Second)
	_, out := post(t, srv.URL, m.LoginToken(), "query { refreshApiUserLoginToken }")
	fresh, _ := out["data"].(map[string]any)["refreshApiUserLoginToken"].(string)
	if got := lifetime(t, fresh); got != 90*time.Second {
		t.Fatalf("refreshed login token lives %s, want 90s", got)
	}
	if got := lifetime(t, m.IssueLoginToken()); got != 90*time.Second {
		t.Fatalf("issued login token lives %s, want 90s", got)
	}
	if login, access := m.TTLs(); login != 90*time.Second || access != 15*time.Minute {
		t.Fatalf("TTLs = %s %s", login, access)
	}
}

func TestAdminTTLEndpoint(t *testing.T) {
	m := New(Options{})
	mux := http.NewServeMux()
	mux.Handle("/admin/", m.AdminHandler())
	mux.Handle("/", m.Handler())
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res, err := http.Post(srv.URL+"/admin/ttl?login=90s&access=60s", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]string
	_ = json.NewDecoder(res.Body).Decode(&got)
	res.Body.Close()
	if res.StatusCode != 200 || got["login_ttl"] != "1m30s" || got["access_ttl"] != "1m0s" {
		t.Fatalf("admin answer %d %v", res.StatusCode, got)
	}
	_, out := post(t, srv.URL+"/graphql", m.LoginToken(), "query { getApiUserAccessToken }")
	access, _ := out["data"].(map[string]any)["getApiUserAccessToken"].(string)
	if got := lifetime(t, access); got != time.Minute {
		t.Fatalf("access token lives %s after the admin call", got)
	}
	if got := lifetime(t, m.IssueLoginToken()); got != 90*time.Second {
		t.Fatalf("login token lives %s after the admin call", got)
	}
	for _, bad := range []string{"login=soon", "access=-1s"} {
		res, err := http.Post(srv.URL+"/admin/ttl?"+bad, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Fatalf("%s: status %d", bad, res.StatusCode)
		}
	}
}

func TestStatusFaultServesWAFPage(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	page := "<html><title>403 Forbidden</title><body>Request blocked by WAF</body></html>"
	m.InjectFault(OpAccessToken, Fault{Kind: FaultStatus, Status: 403, ContentType: "text/html", Body: page, Times: 1})
	body, _ := json.Marshal(map[string]string{"query": "query { getApiUserAccessToken }"})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+m.LoginToken())
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 403 || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") || string(raw) != page {
		t.Fatalf("WAF page = %d %q %q", res.StatusCode, res.Header.Get("Content-Type"), raw)
	}
	if code, _ := post(t, srv.URL, m.LoginToken(), "query { getApiUserAccessToken }"); code != 200 {
		t.Fatalf("after the fault: %d", code)
	}
}

func lifetime(t *testing.T, tok string) time.Duration {
	t.Helper()
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil || c.IssuedAt == nil || c.ExpiresAt == nil {
		t.Fatalf("token claims: %v", err)
	}
	return c.ExpiresAt.Sub(c.IssuedAt.Time)
}

// A held answer is released by a ClearFaults that comes right after the Applied signal: the
// release belongs to the fault that was taken, not to whatever channel is current when the
// handler gets round to waiting (a plugin test once waited out a 30 s client timeout on this).
func TestClearFaultsRightAfterAppliedReleasesTheHeldAnswer(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	for i := 0; i < 200; i++ {
		m.InjectFault(OpAccessToken, Fault{Kind: FaultHoldAfterApply, Times: 1})
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, _, err := postCtx(ctx, srv.URL, m.LoginToken(), "query { getApiUserAccessToken }")
			done <- err
		}()
		<-m.Applied()
		m.ClearFaults()
		if err := <-done; err != nil {
			t.Fatalf("round %d: the held answer was not released by ClearFaults: %v", i, err)
		}
	}
}
