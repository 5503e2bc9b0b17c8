package mockctl

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// mockBin is $MOCK_INABIT_BIN, or the mock built from the plugin's module.
func mockBin(t *testing.T) string {
	t.Helper()
	if bin := os.Getenv("MOCK_INABIT_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			t.Fatal(err)
		}
		return abs
	}
	bin := filepath.Join(t.TempDir(), "mock-inabit")
	build := exec.Command("go", "build", "-o", bin, "./internal/cmd/mock-inabit")
	build.Dir = "../../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the mock: %v\n%s", err, out)
	}
	return bin
}

// query posts one GraphQL query with tok within timeout and returns the status and the decoded
// answer; err is set when the client gave up or the connection dropped.
func query(url, tok string, op Op, timeout time.Duration) (int, map[string]any, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	body, _ := json.Marshal(map[string]string{"query": "query { " + string(op) + " }"})
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url+"/graphql", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer res.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(res.Body).Decode(&out)
	return res.StatusCode, out, nil
}

func tokenOf(out map[string]any, op Op) string {
	data, _ := out["data"].(map[string]any)
	tok, _ := data[string(op)].(string)
	return tok
}

// TestMockProcess drives two mock processes through every method e2e uses.
func TestMockProcess(t *testing.T) {
	bin := mockBin(t)
	m, err := Start(bin, Options{LoginTokenTTL: time.Hour, AccessTokenTTL: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.OnError = func(err error) { t.Errorf("control: %v", err) }
	other, err := Start(bin, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if m.URL() == other.URL() || !strings.HasPrefix(m.URL(), "http://127.0.0.1:") {
		t.Fatalf("URLs %s %s", m.URL(), other.URL())
	}
	if login, access := m.TTLs(); login != time.Hour || access != 2*time.Minute {
		t.Fatalf("TTLs %s %s", login, access)
	}

	old := m.LoginToken()
	_, out, err := query(m.URL(), old, OpAccessToken, 10*time.Second)
	if err != nil || !m.AccessTokenValid(tokenOf(out, OpAccessToken)) || other.AccessTokenValid(tokenOf(out, OpAccessToken)) {
		t.Fatalf("access token: %v %v", out, err)
	}
	if !m.LoginTokenValid(old) || other.LoginTokenValid(old) || other.Calls(OpAccessToken) != 0 {
		t.Fatal("the two mocks share state")
	}

	// A delayed refresh is applied after its client hung up: the old token dies in the process.
	m.InjectFault(OpRefresh, Fault{Kind: FaultDelay, Delay: 500 * time.Millisecond, Times: 1})
	if _, _, err := query(m.URL(), old, OpRefresh, 100*time.Millisecond); err == nil {
		t.Fatal("the client did not give up")
	}
	if !m.WaitIdle(10 * time.Second) {
		t.Fatal("not idle")
	}
	if m.LoginTokenValid(old) || m.LoginToken() == old {
		t.Fatal("the abandoned refresh was not applied")
	}
	if op := <-m.Applied(); op != OpRefresh {
		t.Fatalf("applied %q", op)
	}
	if _, out, _ := query(m.URL(), old, OpRefresh, 10*time.Second); out["errors"] == nil || m.Rejected(OpRefresh) != 1 {
		t.Fatalf("the dead token was accepted: %v", out)
	}
	if m.Calls(OpRefresh) != 2 {
		t.Fatalf("calls %d", m.Calls(OpRefresh))
	}

	// A held answer is released by ClearFaults; the refresh was applied before it.
	live := m.LoginToken()
	m.InjectFault(OpRefresh, Fault{Kind: FaultHoldAfterApply, Delay: time.Minute, Times: 1})
	answered := make(chan string, 1)
	go func() {
		_, out, _ := query(m.URL(), live, OpRefresh, 30*time.Second)
		answered <- tokenOf(out, OpRefresh)
	}()
	select {
	case op := <-m.Applied():
		if op != OpRefresh {
			t.Fatalf("applied %q", op)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no applied signal")
	}
	m.ClearFaults()
	if got := <-answered; got == "" || got != m.LoginToken() {
		t.Fatalf("released answer %q", got)
	}

	// The odd shapes travel over the wire: a trailing newline on an applied refresh, a refusal.
	live = m.LoginToken()
	m.InjectFault(OpRefresh, Fault{Kind: FaultTrailingNewline, Times: 1})
	_, out, _ = query(m.URL(), live, OpRefresh, 10*time.Second)
	if tok := tokenOf(out, OpRefresh); !strings.HasSuffix(tok, "\n") || !m.LoginTokenValid(strings.TrimSuffix(tok, "\n")) {
		t.Fatalf("trailing newline: %q", tok)
	}
	live = m.LoginToken()
	m.InjectFault(OpRefresh, Fault{Kind: FaultRetryAfterHuge, Times: 1})
	if code, _, _ := query(m.URL(), live, OpRefresh, 10*time.Second); code != 429 || !m.LoginTokenValid(live) {
		t.Fatalf("429: %d", code)
	}
	m.InjectFault(OpAccessToken, Fault{Kind: FaultStatus, Status: 503, Body: "down", ContentType: "text/plain"})
	if code, _, _ := query(m.URL(), live, OpAccessToken, 10*time.Second); code != 503 {
		t.Fatalf("status fault: %d", code)
	}
	m.ClearFaults()

	// Revocation, then support issues a new token.
	m.RevokeLoginToken()
	if m.LoginToken() != "" || m.LoginTokenValid(live) {
		t.Fatal("revoke")
	}
	if _, out, _ := query(m.URL(), live, OpAccessToken, 10*time.Second); out["errors"] == nil {
		t.Fatalf("revoked token accepted: %v", out)
	}
	fresh := m.IssueLoginToken()
	if !m.LoginTokenValid(fresh) {
		t.Fatal("issue")
	}
	m.SetLoginTokenTTL(90 * time.Second)
	if login, _ := m.TTLs(); login != 90*time.Second {
		t.Fatalf("SetLoginTokenTTL: %s", login)
	}
	m.ResetCalls()
	if m.Calls(OpRefresh) != 0 || m.Rejected(OpAccessToken) != 0 {
		t.Fatal("ResetCalls")
	}

	// Errors reach OnError with the reason; Close ends the process.
	var got error
	m.OnError = func(err error) { got = err }
	m.InjectFault("nope", Fault{Kind: FaultGarbage})
	if got == nil || !strings.Contains(got.Error(), "400") {
		t.Fatalf("a refused control call: %v", got)
	}
	m.Close()
	got = nil
	m.Calls(OpRefresh)
	if got == nil || !strings.Contains(got.Error(), "exited") {
		t.Fatalf("a call after Close: %v", got)
	}
	m.Close()
}

// TestMockProcessUsers: many API users in one mock process, each refresh killing only its own
// user's token, per-user counters, the peak in flight, and the rate limit's 429.
func TestMockProcessUsers(t *testing.T) {
	m, err := Start(mockBin(t), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.OnError = func(err error) { t.Errorf("control: %v", err) }
	users := m.CreateUsers(1200) // more than one control call's batch
	if len(users) != 1200 || users[0].ID == users[1199].ID {
		t.Fatalf("CreateUsers(1200): %d users", len(users))
	}
	a, b := users[7], users[1100]
	_, out, err := query(m.URL(), a.LoginToken, OpRefresh, 10*time.Second)
	fresh := tokenOf(out, OpRefresh)
	if err != nil || fresh == "" {
		t.Fatalf("refresh: %v %v", out, err)
	}
	if m.LoginTokenValid(a.LoginToken) || !m.LoginTokenValid(fresh) || !m.LoginTokenValid(b.LoginToken) || !m.LoginTokenValid(m.LoginToken()) {
		t.Fatal("a refresh touched another user's token, or not its own")
	}
	if got := m.UserLoginToken(a.ID); got != fresh {
		t.Fatal("UserLoginToken is not the refreshed token")
	}
	list := m.Users()
	if len(list) != 1201 || list[8].ID != a.ID || list[8].Refreshes != 1 || list[8].Calls[OpRefresh] != 1 || list[1101].Refreshes != 0 {
		t.Fatalf("Users(): %d users, %+v", len(list), list[8])
	}
	if c := m.Counts(); c.Users != 1201 || c.Calls[OpRefresh] != 1 || c.PeakInFlight[OpRefresh] != 1 || c.Limited[OpRefresh] != 0 {
		t.Fatalf("Counts(): %+v", c)
	}

	m.SetRateLimit(2)
	codes := map[int]int{}
	for i := 0; i < 6; i++ {
		code, _, _ := query(m.URL(), b.LoginToken, OpAccessToken, 10*time.Second)
		codes[code]++
	}
	if codes[429] == 0 || m.Limited(OpAccessToken) != codes[429] || !m.LoginTokenValid(b.LoginToken) {
		t.Fatalf("6 calls at 2/s: %v, limited %d", codes, m.Limited(OpAccessToken))
	}
	m.SetRateLimit(0)
	sum := func(h map[int64]int) (n int) {
		for _, k := range h {
			n += k
		}
		return n
	}
	if total := sum(m.CallsPerSecond(OpAccessToken)); total != 6 {
		t.Fatalf("CallsPerSecond sums to %d, want 6", total)
	}
	if h := m.History(); sum(h.Limited[OpAccessToken]) != codes[429] || sum(h.RefreshesApplied) != 1 || sum(h.Calls[OpRefresh]) != 1 {
		t.Fatalf("History: %+v", h)
	}
	m.ResetCalls()
	if c := m.Counts(); c.Calls[OpAccessToken] != 0 || c.Limited[OpAccessToken] != 0 || c.PeakInFlight[OpRefresh] != 0 {
		t.Fatalf("after ResetCalls: %+v", c)
	}
}
