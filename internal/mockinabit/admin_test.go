package mockinabit

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// adminServer serves GraphQL and the control API on one listener, as cmd/mock-inabit does.
func adminServer(t *testing.T, opts Options) (*Server, *httptest.Server) {
	t.Helper()
	m := New(opts)
	mux := http.NewServeMux()
	mux.Handle("/admin/", m.AdminHandler())
	mux.Handle("/", m.Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return m, srv
}

// admin calls one control route and decodes its JSON answer into out (when not nil).
func admin(t *testing.T, method, url, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode == 200 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, raw)
		}
	}
	return res.StatusCode
}

func TestAdminTokensCountsAndValidity(t *testing.T) {
	m, srv := adminServer(t, Options{})
	var tok struct {
		LoginToken string `json:"login_token"`
	}
	admin(t, "GET", srv.URL+"/admin/login-token", "", &tok)
	if tok.LoginToken != m.LoginToken() {
		t.Fatal("GET /admin/login-token")
	}
	old := tok.LoginToken
	_, out := post(t, srv.URL+"/graphql", old, queryOf(OpAccessToken))
	access, _ := out["data"].(map[string]any)["getApiUserAccessToken"].(string)

	var valid struct{ Valid bool }
	for _, c := range []struct {
		kind, token string
		want        bool
	}{{"login", old, true}, {"access", access, true}, {"access", old, false}, {"login", access, false}} {
		body, _ := json.Marshal(map[string]string{"token": c.token})
		if code := admin(t, "POST", srv.URL+"/admin/valid/"+c.kind, string(body), &valid); code != 200 || valid.Valid != c.want {
			t.Fatalf("valid/%s = %d %v, want %v", c.kind, code, valid.Valid, c.want)
		}
	}

	admin(t, "POST", srv.URL+"/admin/login-token", "", &tok)
	if tok.LoginToken == old || !m.LoginTokenValid(tok.LoginToken) || m.LoginTokenValid(old) {
		t.Fatal("POST /admin/login-token did not issue a new token")
	}
	post(t, srv.URL, old, queryOf(OpRefresh)) // rejected: the old token died
	var counts struct {
		Calls    map[Op]int `json:"calls"`
		Rejected map[Op]int `json:"rejected"`
	}
	admin(t, "GET", srv.URL+"/admin/counts", "", &counts)
	if counts.Calls[OpAccessToken] != 1 || counts.Calls[OpRefresh] != 1 || counts.Rejected[OpRefresh] != 1 || counts.Rejected[OpAccessToken] != 0 {
		t.Fatalf("counts %+v", counts)
	}
	admin(t, "DELETE", srv.URL+"/admin/counts", "", &counts)
	if counts.Calls[OpRefresh] != 0 || m.Calls(OpRefresh) != 0 {
		t.Fatalf("DELETE /admin/counts: %+v", counts)
	}

	admin(t, "POST", srv.URL+"/admin/revoke", "", &tok)
	live := m.LoginToken()
	if tok.LoginToken != "" || live != "" {
		t.Fatal("POST /admin/revoke left a live token")
	}
}

func TestAdminFaultsAppliedAndIdle(t *testing.T) {
	m, srv := adminServer(t, Options{})
	old := m.LoginToken()
	fault := Fault{Kind: FaultHoldAfterApply, Delay: time.Minute, Times: 1}.JSON()
	body, _ := json.Marshal(fault)
	if code := admin(t, "POST", srv.URL+"/admin/faults?op="+string(OpRefresh), string(body), nil); code != 200 {
		t.Fatalf("inject: %d", code)
	}
	for _, bad := range []struct{ op, body string }{
		{"nope", string(body)},
		{string(OpRefresh), `{"kind":"nope"}`},
		{string(OpRefresh), `{"kind":"delay","delay":"soon"}`},
		{string(OpRefresh), `{"kind":"status"}`},
		{string(OpRefresh), `{"kind":"garbage","extra":1}`},
	} {
		if code := admin(t, "POST", srv.URL+"/admin/faults?op="+bad.op, bad.body, nil); code != http.StatusBadRequest {
			t.Fatalf("bad fault %v: %d", bad, code)
		}
	}

	// The held refresh is applied at once; the long poll on /admin/applied reports it.
	answered := make(chan int, 1)
	go func() {
		code, _, _ := postCtx(context.Background(), srv.URL, old, queryOf(OpRefresh))
		answered <- code
	}()
	var applied struct{ Op Op }
	if admin(t, "GET", srv.URL+"/admin/applied?wait=10s", "", &applied); applied.Op != OpRefresh {
		t.Fatalf("applied = %q", applied.Op)
	}
	if m.LoginTokenValid(old) {
		t.Fatal("the held refresh was not applied")
	}
	var idle struct{ Idle bool }
	if admin(t, "POST", srv.URL+"/admin/wait-idle?timeout=100ms", "", &idle); idle.Idle {
		t.Fatal("idle while an answer is held")
	}
	if code := admin(t, "DELETE", srv.URL+"/admin/faults", "", nil); code != 200 {
		t.Fatalf("clear: %d", code)
	}
	if code := <-answered; code != 200 {
		t.Fatalf("released answer: %d", code)
	}
	if admin(t, "POST", srv.URL+"/admin/wait-idle?timeout=5s", "", &idle); !idle.Idle {
		t.Fatal("not idle after the release")
	}
	start := time.Now()
	if admin(t, "GET", srv.URL+"/admin/applied?wait=50ms", "", &applied); applied.Op != "" || time.Since(start) > 5*time.Second {
		t.Fatalf("applied with nothing pending = %q", applied.Op)
	}

	// Every new shape round-trips through the wire form.
	for k := FaultErrorsNotList; k <= FaultRetryAfterHuge; k++ {
		f := Fault{Kind: k, Message: "m", Code: "C", RetryAfter: "7", Times: 2}
		body, _ := json.Marshal(f.JSON())
		var got struct {
			Fault FaultJSON `json:"fault"`
		}
		if code := admin(t, "POST", srv.URL+"/admin/faults?op="+string(OpAccessToken), string(body), &got); code != 200 {
			t.Fatalf("%s: %d", k, code)
		}
		back, err := got.Fault.Fault()
		if err != nil || back != f {
			t.Fatalf("%s: round trip %+v %v", k, back, err)
		}
	}
	if code := admin(t, "GET", srv.URL+"/admin/nope", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown route: %d", code)
	}
}
