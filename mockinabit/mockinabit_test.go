package mockinabit

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
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
