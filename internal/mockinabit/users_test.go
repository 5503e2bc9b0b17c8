package mockinabit

// Tests of many API users on one mock (issue 19): each user has its own live login token, one
// user's refresh kills only that user's old token, counters per user and in total, and a
// rate limit that answers 429 like a real API.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func userByID(t *testing.T, m *Server, id string) UserStats {
	t.Helper()
	for _, u := range m.Users() {
		if u.ID == id {
			return u
		}
	}
	t.Fatalf("no user %q", id)
	return UserStats{}
}

func TestEachUserHasItsOwnLiveLoginToken(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	users := m.CreateUsers(3)
	if len(users) != 3 {
		t.Fatalf("CreateUsers(3) made %d", len(users))
	}
	seen := map[string]bool{m.LoginToken(): true, DefaultUserID: true}
	for _, u := range users {
		if seen[u.ID] || seen[u.LoginToken] || u.LoginToken == "" {
			t.Fatalf("user %+v repeats an id or a token", u)
		}
		seen[u.ID], seen[u.LoginToken] = true, true
		if !m.LoginTokenValid(u.LoginToken) {
			t.Fatalf("user %s: its login token is not live", u.ID)
		}
		if tok, ok := m.UserLoginToken(u.ID); !ok || tok != u.LoginToken {
			t.Fatalf("UserLoginToken(%s) = %v", u.ID, ok)
		}
		if code, out := post(t, srv.URL, u.LoginToken, queryOf(OpAccessToken)); code != 200 || !m.AccessTokenValid(tokenOf(out, OpAccessToken)) {
			t.Fatalf("user %s: access token: %d %v", u.ID, code, out)
		}
	}
	if !m.LoginTokenValid(m.LoginToken()) {
		t.Fatal("the default user's token died when users were created")
	}
	if got := len(m.Users()); got != 4 {
		t.Fatalf("Users() lists %d, want the default user and 3", got)
	}
	if more := m.CreateUsers(2); more[0].ID == users[2].ID || more[1].ID == users[0].ID {
		t.Fatalf("a second CreateUsers reused ids: %+v", more)
	}
}

// The point of the many-users mock: a refresh, inabit's one call that kills a token, kills only
// the caller's own old token. Every other user's token (and the default user's) stays live.
func TestOneUsersRefreshNeverKillsAnotherUsersToken(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	users := m.CreateUsers(5)
	def := m.LoginToken()

	a := users[2]
	code, out := post(t, srv.URL, a.LoginToken, queryOf(OpRefresh))
	fresh := tokenOf(out, OpRefresh)
	if code != 200 || fresh == "" || fresh == a.LoginToken {
		t.Fatalf("refresh of %s: %d %v", a.ID, code, out)
	}
	if m.LoginTokenValid(a.LoginToken) || !m.LoginTokenValid(fresh) {
		t.Fatal("the refresh did not swap the caller's own token")
	}
	if tok, _ := m.UserLoginToken(a.ID); tok != fresh {
		t.Fatal("UserLoginToken does not return the refreshed token")
	}
	for _, u := range append(users[:2:2], users[3:]...) {
		if !m.LoginTokenValid(u.LoginToken) {
			t.Fatalf("%s's refresh killed %s's token", a.ID, u.ID)
		}
		if code, out := post(t, srv.URL, u.LoginToken, queryOf(OpRefresh)); code != 200 || tokenOf(out, OpRefresh) == "" {
			t.Fatalf("%s cannot refresh after %s did: %d %v", u.ID, a.ID, code, out)
		}
	}
	if !m.LoginTokenValid(def) || m.LoginToken() != def {
		t.Fatal("a user's refresh killed the default user's token")
	}

	// The old token is rejected, and counted against its own user.
	if _, out := post(t, srv.URL, a.LoginToken, queryOf(OpAccessToken)); tokenOf(out, OpAccessToken) != "" {
		t.Fatalf("dead token got an access token: %v", out)
	}
	st := userByID(t, m, a.ID)
	if st.Calls[OpRefresh] != 1 || st.Calls[OpAccessToken] != 1 || st.Rejected[OpAccessToken] != 1 || st.Refreshes != 1 || !st.Live {
		t.Fatalf("%s's counters: %+v", a.ID, st)
	}
	other := userByID(t, m, users[0].ID)
	if other.Calls[OpRefresh] != 1 || other.Rejected[OpAccessToken] != 0 || other.Refreshes != 1 {
		t.Fatalf("%s's counters: %+v", users[0].ID, other)
	}
	if d := userByID(t, m, DefaultUserID); d.Calls[OpRefresh] != 0 || d.Refreshes != 0 || !d.Live {
		t.Fatalf("default user's counters: %+v", d)
	}
	// Totals are the sum over users (every call here carried some user's token).
	if m.Calls(OpRefresh) != 5 || m.Calls(OpAccessToken) != 1 || m.Rejected(OpAccessToken) != 1 {
		t.Fatalf("totals: refresh %d access %d rejected %d", m.Calls(OpRefresh), m.Calls(OpAccessToken), m.Rejected(OpAccessToken))
	}
	m.ResetCalls()
	if st := userByID(t, m, a.ID); st.Calls[OpRefresh] != 0 || st.Refreshes != 0 {
		t.Fatalf("ResetCalls left %s's counters: %+v", a.ID, st)
	}
}

// IssueLoginToken and RevokeLoginToken stay the default user's: other users keep their tokens.
func TestSupportActionsTouchOnlyTheDefaultUser(t *testing.T) {
	m := New(Options{})
	u := m.CreateUsers(1)[0]
	m.IssueLoginToken()
	m.RevokeLoginToken()
	if !m.LoginTokenValid(u.LoginToken) {
		t.Fatal("a support action on the default user killed another user's token")
	}
}

// Beyond the limit's calls in one second, the mock answers 429 with a Retry-After and applies
// nothing: a refused refresh leaves the token live. The next second serves again.
func TestRateLimitAnswers429WithRetryAfter(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 100e6, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	m, srv := NewHTTPTest(Options{Now: clock})
	defer srv.Close()
	users := m.CreateUsers(4)
	m.SetRateLimit(3)
	if m.RateLimit() != 3 {
		t.Fatalf("RateLimit() = %d", m.RateLimit())
	}
	for i := 0; i < 3; i++ {
		if code, _ := post(t, srv.URL, users[i].LoginToken, queryOf(OpAccessToken)); code != 200 {
			t.Fatalf("call %d within the limit: %d", i, code)
		}
	}
	body, _ := json.Marshal(map[string]string{"query": queryOf(OpRefresh)})
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(string(body)))
	req.Header.Set("Authorization", "Bearer "+users[3].LoginToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusTooManyRequests || res.Header.Get("Retry-After") != "1" {
		t.Fatalf("call beyond the limit: %d, Retry-After %q", res.StatusCode, res.Header.Get("Retry-After"))
	}
	if !m.LoginTokenValid(users[3].LoginToken) {
		t.Fatal("a refused refresh was applied")
	}
	if m.Limited(OpRefresh) != 1 || m.Limited(OpAccessToken) != 0 || m.Calls(OpRefresh) != 1 {
		t.Fatalf("limited %d/%d, refresh calls %d", m.Limited(OpRefresh), m.Limited(OpAccessToken), m.Calls(OpRefresh))
	}
	if st := userByID(t, m, users[3].ID); st.Limited[OpRefresh] != 1 || st.Refreshes != 0 {
		t.Fatalf("refused user's counters: %+v", st)
	}

	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	if code, out := post(t, srv.URL, users[3].LoginToken, queryOf(OpRefresh)); code != 200 || tokenOf(out, OpRefresh) == "" {
		t.Fatalf("the next second: %d %v", code, out)
	}
	m.SetRateLimit(0)
	for i := 0; i < 10; i++ {
		if code, _ := post(t, srv.URL, users[0].LoginToken, queryOf(OpAccessToken)); code != 200 {
			t.Fatalf("limit off, call %d: %d", i, code)
		}
	}
	if sec := m.CallsPerSecond(OpAccessToken); sec[now.Unix()-1] != 3 || sec[now.Unix()] != 10 {
		t.Fatalf("CallsPerSecond: %v", sec)
	}
	if lim, calls := m.LimitedPerSecond(OpRefresh), m.CallsPerSecond(OpRefresh); lim[now.Unix()-1] != 1 || len(lim) != 1 || calls[now.Unix()-1] != 1 || calls[now.Unix()] != 1 {
		t.Fatalf("refreshes per second: calls %v, limited %v", calls, lim)
	}
	if applied := m.RefreshesAppliedPerSecond(); applied[now.Unix()] != 1 || len(applied) != 1 {
		t.Fatalf("RefreshesAppliedPerSecond: %v", applied)
	}
}

// Calls held open at once are counted, and the peak is kept until ResetCalls.
func TestPeakInFlight(t *testing.T) {
	m, srv := NewHTTPTest(Options{})
	defer srv.Close()
	users := m.CreateUsers(3)
	m.InjectFault(OpRefresh, Fault{Kind: FaultHoldAfterApply, Delay: time.Minute})
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, _ = postCtx(context.Background(), srv.URL, u.LoginToken, queryOf(OpRefresh))
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); m.InFlight(OpRefresh) < 3; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d, want 3", m.InFlight(OpRefresh))
		}
	}
	m.ClearFaults()
	wg.Wait()
	if m.InFlight(OpRefresh) != 0 || m.PeakInFlight(OpRefresh) != 3 || m.PeakInFlight(OpAccessToken) != 0 {
		t.Fatalf("in flight %d, peak %d/%d", m.InFlight(OpRefresh), m.PeakInFlight(OpRefresh), m.PeakInFlight(OpAccessToken))
	}
	m.ResetCalls()
	if m.PeakInFlight(OpRefresh) != 0 {
		t.Fatal("ResetCalls kept the peak")
	}
}

func TestAdminUsersAndRateLimit(t *testing.T) {
	m, srv := adminServer(t, Options{})
	var created struct {
		Users []User `json:"users"`
	}
	if code := admin(t, "POST", srv.URL+"/admin/users?n=3", "", &created); code != 200 || len(created.Users) != 3 {
		t.Fatalf("POST /admin/users?n=3: %d %+v", code, created)
	}
	for _, u := range created.Users {
		if !m.LoginTokenValid(u.LoginToken) {
			t.Fatalf("user %s: token not live", u.ID)
		}
	}
	for _, bad := range []string{"", "?n=0", "?n=-1", "?n=x", fmt.Sprintf("?n=%d", MaxUsersPerCall+1)} {
		if code := admin(t, "POST", srv.URL+"/admin/users"+bad, "", nil); code != http.StatusBadRequest {
			t.Fatalf("POST /admin/users%s: %d", bad, code)
		}
	}
	post(t, srv.URL, created.Users[1].LoginToken, queryOf(OpRefresh))
	var one struct {
		UserStats
		LoginToken string `json:"login_token"`
	}
	if code := admin(t, "GET", srv.URL+"/admin/users/"+created.Users[1].ID, "", &one); code != 200 || one.Refreshes != 1 || !m.LoginTokenValid(one.LoginToken) || one.LoginToken == created.Users[1].LoginToken {
		t.Fatalf("GET /admin/users/{id}: %d %+v", code, one)
	}
	if code := admin(t, "GET", srv.URL+"/admin/users/nobody", "", nil); code != http.StatusNotFound {
		t.Fatalf("unknown user: %d", code)
	}
	var list struct {
		Users []UserStats `json:"users"`
	}
	if admin(t, "GET", srv.URL+"/admin/users", "", &list); len(list.Users) != 4 || list.Users[0].ID != DefaultUserID || list.Users[2].Refreshes != 1 {
		t.Fatalf("GET /admin/users: %+v", list)
	}

	var rl struct {
		PerSecond int        `json:"per_second"`
		Limited   map[Op]int `json:"limited"`
	}
	if code := admin(t, "POST", srv.URL+"/admin/rate-limit?per_second=1", "", &rl); code != 200 || rl.PerSecond != 1 || m.RateLimit() != 1 {
		t.Fatalf("POST /admin/rate-limit: %d %+v", code, rl)
	}
	for _, bad := range []string{"", "?per_second=-1", "?per_second=x"} {
		if code := admin(t, "POST", srv.URL+"/admin/rate-limit"+bad, "", nil); code != http.StatusBadRequest {
			t.Fatalf("POST /admin/rate-limit%s: %d", bad, code)
		}
	}
	// Two calls in a row: at most one fits in the second (the second may straddle into the next).
	statuses := map[int]int{}
	for i := 0; i < 3; i++ {
		code, _ := post(t, srv.URL, created.Users[0].LoginToken, queryOf(OpAccessToken))
		statuses[code]++
	}
	if statuses[http.StatusTooManyRequests] == 0 {
		t.Fatalf("3 calls at a limit of 1/s: %v", statuses)
	}
	var counts struct {
		Limited      map[Op]int `json:"limited"`
		PeakInFlight map[Op]int `json:"peak_in_flight"`
	}
	if admin(t, "GET", srv.URL+"/admin/counts", "", &counts); counts.Limited[OpAccessToken] != statuses[http.StatusTooManyRequests] || counts.PeakInFlight[OpRefresh] != 1 {
		t.Fatalf("GET /admin/counts: %+v", counts)
	}
	var hist struct {
		CallsPerSecond   map[Op]map[string]int `json:"calls_per_second"`
		LimitedPerSecond map[Op]map[string]int `json:"limited_per_second"`
		Applied          map[string]int        `json:"refreshes_applied_per_second"`
	}
	if admin(t, "GET", srv.URL+"/admin/history", "", &hist); sum(hist.CallsPerSecond[OpAccessToken]) != 3 || sum(hist.CallsPerSecond[OpRefresh]) != 1 ||
		sum(hist.LimitedPerSecond[OpAccessToken]) != statuses[http.StatusTooManyRequests] || sum(hist.Applied) != 1 {
		t.Fatalf("GET /admin/history: %+v", hist)
	}
	if code := admin(t, "DELETE", srv.URL+"/admin/rate-limit", "", &rl); code != 200 || rl.PerSecond != 0 || m.RateLimit() != 0 {
		t.Fatalf("DELETE /admin/rate-limit: %d %+v", code, rl)
	}
}

func sum(m map[string]int) (n int) {
	for _, v := range m {
		n += v
	}
	return n
}

func tokenOf(out map[string]any, op Op) string {
	data, _ := out["data"].(map[string]any)
	tok, _ := data[string(op)].(string)
	return tok
}
