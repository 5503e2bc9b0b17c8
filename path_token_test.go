package inabit

// Tests of path_token.go: leases, the shared access-token cache, upstream errors and warnings.

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func TestTokenReadReturnsLease(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, nil)
	resp := env.readToken(t)

	tok, _ := resp.Data["access_token"].(string)
	if !env.mock.AccessTokenValid(tok) {
		t.Fatal("access_token is not a valid mock access token")
	}
	if resp.Data["token_type"] != "Bearer" {
		t.Fatalf("token_type = %v", resp.Data["token_type"])
	}
	claims, _ := parseClaims(tok)
	if resp.Data["expires_at"] != claims.ExpiresAt.Format(time.RFC3339) {
		t.Fatalf("expires_at = %v, want %v", resp.Data["expires_at"], claims.ExpiresAt)
	}
	if resp.Secret == nil || resp.Secret.Renewable {
		t.Fatalf("want a non-renewable lease, got %#v", resp.Secret)
	}
	remaining := time.Until(claims.ExpiresAt)
	if ttl := resp.Secret.TTL; ttl <= 0 || ttl > remaining-leaseSafetyMargin || ttl < remaining-leaseSafetyMargin-3*time.Second {
		t.Fatalf("lease TTL %s, want exp-now-60s (about %s)", ttl, remaining-leaseSafetyMargin)
	}
	if len(resp.Warnings) != 0 {
		t.Fatalf("healthy read carried warnings: %v", resp.Warnings)
	}
}

func TestLeaseTTL(t *testing.T) {
	cases := []struct {
		name      string
		remaining time.Duration
		want      time.Duration
	}{
		{"15 minutes", 15 * time.Minute, 14 * time.Minute},
		{"exactly two margins", 2 * time.Minute, time.Minute},
		{"short token gets half", 90 * time.Second, 45 * time.Second},
		{"almost dead never zero", 500 * time.Millisecond, time.Second},
		{"already expired never zero", -time.Minute, time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
			a := &accessToken{fetchedAt: base, life: tc.remaining}
			if got := a.leaseTTL(0, base); got != tc.want {
				t.Fatalf("leaseTTL = %s, want %s", got, tc.want)
			}
		})
	}
}

func TestAccessTokenWithoutExpAssumes15Minutes(t *testing.T) {
	now := time.Now()
	for _, tok := range []string{"opaque-token", makeJWT(t, jwt.MapClaims{"sub": "x"})} {
		if got := newAccessToken(tok, now, 0).expiresAt(); !got.Equal(now.Add(15 * time.Minute)) {
			t.Errorf("expiry of a token without exp = %s, want now+15m", got)
		}
	}
}

func TestTokenCacheHonoursMinTTL(t *testing.T) {
	cases := []struct {
		name        string
		accessTTL   time.Duration
		minTTL      string
		reads       int
		wantUpCalls int
	}{
		{"cached while enough life remains", 15 * time.Minute, "10m", 5, 1},
		{"min ttl = lifetime mints per read", 15 * time.Minute, "15m", 5, 5},
		{"short-lived tokens never cached below min", 3 * time.Minute, "5m", 3, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: tc.accessTTL})
			env.configure(t, map[string]interface{}{"access_token_min_ttl": tc.minTTL, "verify_connection": false})
			for i := 0; i < tc.reads; i++ {
				env.readToken(t)
			}
			if got := env.mock.Calls(mockinabit.OpAccessToken); got != tc.wantUpCalls {
				t.Fatalf("%d reads made %d upstream calls, want %d", tc.reads, got, tc.wantUpCalls)
			}
		})
	}
}

func TestTokenCacheExpiresWithClock(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{AccessTokenTTL: 15 * time.Minute})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	first := env.readToken(t).Data["access_token"]
	env.clock.advance(6 * time.Minute) // 9m left < 10m min TTL
	if env.readToken(t).Data["access_token"] == first {
		t.Fatal("a token with less than access_token_min_ttl left was handed out")
	}
}

func TestConcurrentReadsShareOneUpstreamCall(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	// Hold the first answer so every reader piles up behind one in-flight call.
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 300 * time.Millisecond, Times: 1})

	const readers = 1000
	var wg sync.WaitGroup
	tokens := make([]string, readers)
	errs := make([]error, readers)
	start := make(chan struct{})
	for i := 0; i < readers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			resp, err := env.requestOK(logical.ReadOperation, "token", nil)
			errs[i] = err
			if resp != nil && resp.Data != nil {
				tokens[i], _ = resp.Data["access_token"].(string)
			}
		}(i)
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("reader %d failed: %v", i, err)
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("reader %d got a different token", i)
		}
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
		t.Fatalf("%d concurrent readers made %d upstream calls, want 1", readers, got)
	}
}

func TestImpatientReaderDoesNotFailOthers(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 300 * time.Millisecond, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.ReadOperation, Path: "token", Storage: env.storage})
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	env.readToken(t) // joins the same flight and must succeed
	if err := <-done; err == nil {
		t.Fatal("the cancelled reader reported success")
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
		t.Fatalf("upstream calls = %d, want 1", got)
	}
}

func TestTokenReadWarnsWhenLoginTokenInDanger(t *testing.T) {
	t.Run("expires within 72h", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 48 * time.Hour})
		env.configure(t, map[string]interface{}{"rotation_period": "24h"})
		resp := env.readToken(t)
		if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "rotate-root") {
			t.Fatalf("warnings = %v, want one telling the operator to rotate", resp.Warnings)
		}
	})
	t.Run("rotation failing", func(t *testing.T) {
		env := newTestEnv(t, mockinabit.Options{})
		env.configure(t, nil)
		env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Times: 1})
		if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
			t.Fatal("rotation against a 503 reported success")
		}
		resp := env.readToken(t)
		if len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "rotation is failing") {
			t.Fatalf("warnings = %v", resp.Warnings)
		}
	})
}

func TestTokenReadUpstreamErrors(t *testing.T) {
	cases := []struct {
		name       string
		fault      mockinabit.Fault
		wantStatus int
		wantText   string
	}{
		{"401 page", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 401, ContentType: "text/html", Body: "<html><title>Unauthorized</title></html>"}, http.StatusBadGateway, "WAF or proxy"},
		{"401 from a gateway", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 401, ContentType: "application/json", Body: `{"message":"expired"}`}, http.StatusBadGateway, "WAF or proxy"},
		{"401 from the API", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 401, ContentType: "application/json", Body: `{"data":null,"errors":[{"message":"jwt expired","extensions":{"code":"UNAUTHENTICATED"}}]}`}, http.StatusBadGateway, "write a new login_token"},
		{"graphql unauthenticated", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "jwt expired"}, http.StatusBadGateway, "rejected"},
		{"graphql generic", mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "INTERNAL", Message: "boom"}, http.StatusBadGateway, "a GraphQL error (code INTERNAL)"},
		{"500", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 500, Body: "oops"}, http.StatusServiceUnavailable, "HTTP 500"},
		{"503 html", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Body: "<html><title>Service Unavailable</title></html>"}, http.StatusServiceUnavailable, "an HTML page"},
		{"429 long retry-after", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "120"}, http.StatusTooManyRequests, "retry after 2m0s"},
		{"garbage", mockinabit.Fault{Kind: mockinabit.FaultGarbage}, http.StatusBadGateway, "text that is neither JSON nor HTML"},
		{"oversized", mockinabit.Fault{Kind: mockinabit.FaultOversize, Size: 5 << 20}, http.StatusBadGateway, "larger than 1 MiB"},
		{"timeout", mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 5 * time.Second}, http.StatusServiceUnavailable, "timed out"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"verify_connection": false, "request_timeout": 1})
			env.mock.InjectFault(mockinabit.OpAccessToken, tc.fault)
			_, err := env.request(logical.ReadOperation, "token", nil)
			coded, ok := err.(logical.HTTPCodedError)
			if !ok {
				t.Fatalf("err = %#v, want a coded error", err)
			}
			if coded.Code() != tc.wantStatus || !strings.Contains(coded.Error(), tc.wantText) {
				t.Fatalf("got %d %q, want %d containing %q", coded.Code(), coded.Error(), tc.wantStatus, tc.wantText)
			}
			env.mock.ClearFaults()
			env.readToken(t) // the next healthy call recovers
		})
	}
}

func TestTransientUpstreamFaultsAreRetried(t *testing.T) {
	cases := []struct {
		name  string
		fault mockinabit.Fault
	}{
		{"503 twice", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 503, Times: 2}},
		{"429 with short retry-after", mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 429, RetryAfter: "1", Times: 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"verify_connection": false})
			env.mock.InjectFault(mockinabit.OpAccessToken, tc.fault)
			env.readToken(t)
			if got, want := env.mock.Calls(mockinabit.OpAccessToken), tc.fault.Times+1; got != want {
				t.Fatalf("upstream calls = %d, want %d", got, want)
			}
		})
	}
}

func TestTokenReadWithoutConfig(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	resp, err := env.request(logical.ReadOperation, "token", nil)
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), "write the API user's login token") {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
}

func TestRevokeSucceedsAndKeepsCache(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"verify_connection": false})
	resp := env.readToken(t)
	_, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.RevokeOperation, Storage: env.storage, Secret: resp.Secret, Data: resp.Data,
	})
	if err != nil {
		t.Fatalf("revoke failed: %v (would make the lease irrevocable)", err)
	}
	env.readToken(t)
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 1 {
		t.Fatalf("revoke evicted the shared cache: %d upstream calls, want 1", got)
	}
}

// Operator messages name the mount the request came in on, not a hard-coded inabit/.
func TestMessagesNameTheRealMount(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	resp, err := env.b.HandleRequest(context.Background(), &logical.Request{
		Operation: logical.ReadOperation, Path: "token", Storage: env.storage, MountPoint: "inabit-admin/",
	})
	if err != nil || !resp.IsError() || !strings.Contains(resp.Error().Error(), `"vault write inabit-admin/config login_token=`) {
		t.Fatalf("unconfigured read: resp=%v err=%v", resp, err)
	}
	env.configure(t, nil)
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDropAfterApply, Times: 1})
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("test setup: the rotation should not have finished")
	}
	env.mock.WaitIdle(5 * time.Second)
	env.clock.advance(11 * time.Minute)
	env.tick(t)
	if msg := env.readConfig(t)["last_rotation_error"].(string); !strings.Contains(msg, "write it to inabit-admin/config (login_token)") {
		t.Fatalf("LOST message = %q, want it to name inabit-admin/config", msg)
	}
}

// A token read warns when the login token lives shorter than rotation_period (issue 8 defect 4).
func TestTokenReadWarnsLoginTokenLivesShorterThanRotationPeriod(t *testing.T) {
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
