package inabitapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

func statusHandler(status int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		io.WriteString(w, body)
	}
}

// serve starts h and returns a client for it whose retries do not wait.
func serve(t *testing.T, h http.Handler, timeout time.Duration) *Client {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return New(srv.URL, timeout, WithoutRetryWait())
}

func TestAccessToken_EveryFailureIsATypedRedactedError(t *testing.T) {
	saidFor := map[string]string{
		"403 WAF page": "HTML page: Access denied", "401 proxy page": "HTML page: Log in",
		"200 forbidden": "role may not", "500": "internal", "502 html": "HTML page: 502 Bad Gateway",
		"404": "not found", "200 unauthenticated": "Unauthorized", "200 generic graphql error": "something broke",
		"error echoes a token": "bad token [redacted]",
	}
	cases := []struct {
		name       string
		handler    http.HandlerFunc
		wantKind   error
		wantStatus int
		wantText   string
	}{
		{"ok", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"data":{"getApiUserAccessToken":"tok"}}`)
		}, nil, 0, ""},
		{"403", statusHandler(403, "text/plain", ""), ErrRefused, 403, "refused"},
		{"403 WAF page", statusHandler(403, "text/html", "<html><title>Access denied</title></html>"), ErrRefused, 403, "an HTML page, not a GraphQL answer"},
		{"401 proxy page", statusHandler(401, "text/html", "<html><title>Log in</title></html>"), ErrRefused, 401, "an HTML page, not a GraphQL answer"},
		{"200 forbidden", statusHandler(200, "application/json", `{"errors":[{"message":"role may not","extensions":{"code":"FORBIDDEN"}}]}`), ErrRefused, 200, "a GraphQL error (code FORBIDDEN)"},
		{"429", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "42")
			w.WriteHeader(429)
		}, ErrRateLimited, 429, "retry after 42s"},
		{"500", statusHandler(500, "text/plain", "internal"), ErrUnavailable, 500, "text that is neither JSON nor HTML"},
		{"502 html", statusHandler(502, "text/html", "<html><head><title>502 Bad Gateway</title></head></html>"), ErrUnavailable, 502, "an HTML page"},
		{"404", statusHandler(404, "text/plain", "not found"), ErrBadResponse, 404, "text that is neither JSON nor HTML"},
		{"200 html", statusHandler(200, "text/html", "<html>maintenance</html>"), ErrBadResponse, 200, "an HTML page"},
		{"200 garbage", statusHandler(200, "application/json", "{{{"), ErrBadResponse, 200, "text that is neither JSON nor HTML"},
		{"200 unauthenticated", statusHandler(200, "application/json", `{"errors":[{"message":"Unauthorized","extensions":{"code":"UNAUTHENTICATED"}}]}`), ErrUnauthorized, 200, "a GraphQL error (code UNAUTHENTICATED)"},
		{"200 generic graphql error", statusHandler(200, "application/json", `{"errors":[{"message":"something broke"}],"data":null}`), ErrBadResponse, 200, "a GraphQL error without a code"},
		{"200 no data", statusHandler(200, "application/json", `{"data":{}}`), ErrBadResponse, 200, "no getApiUserAccessToken"},
		{"200 null token", statusHandler(200, "application/json", `{"data":{"getApiUserAccessToken":null}}`), ErrBadResponse, 200, "no getApiUserAccessToken"},
		{"200 empty token", statusHandler(200, "application/json", `{"data":{"getApiUserAccessToken":""}}`), ErrBadResponse, 200, "non-empty string"},
		{"200 number token", statusHandler(200, "application/json", `{"data":{"getApiUserAccessToken":7}}`), ErrBadResponse, 200, "non-empty string"},
		{"200 data not object", statusHandler(200, "application/json", `{"data":"x"}`), ErrBadResponse, 200, "JSON that is not a GraphQL answer"},
		{"oversized", func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, `{"data":{"getApiUserAccessToken":"`+strings.Repeat("a", 2<<20)+`"}}`)
		}, ErrBadResponse, 200, "larger than 1 MiB"},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/graphql", http.StatusFound)
		}, ErrBadResponse, 302, ""},
		{"error echoes a token", statusHandler(500, "text/plain", "bad token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"), ErrUnavailable, 500, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := serve(t, tc.handler, 2*time.Second).AccessToken(context.Background(), "login")
			if tc.wantKind == nil {
				if err != nil || tok != "tok" {
					t.Fatalf("tok=%q err=%v", tok, err)
				}
				return
			}
			var ue *Error
			if !errors.As(err, &ue) || !errors.Is(err, tc.wantKind) {
				t.Fatalf("err = %v (%T), want %v", err, err, tc.wantKind)
			}
			if ue.Status != tc.wantStatus || !strings.Contains(err.Error(), tc.wantText) {
				t.Fatalf("got status %d %q, want %d containing %q", ue.Status, err.Error(), tc.wantStatus, tc.wantText)
			}
			if strings.Contains(err.Error(), "eyJhbGciOiJIUzI1NiJ9") || strings.Contains(ue.Said, "eyJhbGciOiJIUzI1NiJ9") {
				t.Fatal("error carries a token")
			}
			// What the answer said reaches the operator's log (Said), redacted, never Error().
			if want := saidFor[tc.name]; !strings.Contains(ue.Said, want) {
				t.Fatalf("Said = %q, want it to contain %q", ue.Said, want)
			}
		})
	}
}

func TestAccessToken_RetriesOnlyTransientFaults(t *testing.T) {
	cases := []struct {
		name      string
		status    int
		wantCalls int
	}{
		{"503 is retried", 503, MaxAttempts},
		{"429 without Retry-After is retried", 429, MaxAttempts},
		{"403 is not", 403, 1},
		{"404 is not", 404, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				calls++
				w.WriteHeader(tc.status)
			}), time.Second)
			if _, err := c.AccessToken(context.Background(), "x"); err == nil {
				t.Fatal("no error")
			}
			if calls != tc.wantCalls {
				t.Fatalf("sent %d times, want %d", calls, tc.wantCalls)
			}
		})
	}
}

func TestRefresh_SendsBearerAndQuery(t *testing.T) {
	var gotAuth, gotBody string
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth = r.Header.Get("Authorization")
		b, _ := io.ReadAll(r.Body)
		gotBody = string(b)
		io.WriteString(w, `{"data":{"refreshApiUserLoginToken":"new"}}`)
	}), time.Second)
	tok, notes, err := c.RefreshLoginToken(context.Background(), "old-login")
	if err != nil || tok != "new" || notes != "" {
		t.Fatalf("tok=%q err=%v", tok, err)
	}
	if gotAuth != "Bearer old-login" || !strings.Contains(gotBody, "refreshApiUserLoginToken") {
		t.Fatalf("auth=%q body=%q", gotAuth, gotBody)
	}
}

func TestRefresh_IsNeverRetried(t *testing.T) {
	calls := 0
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(503)
	}), time.Second)
	if _, _, err := c.RefreshLoginToken(context.Background(), "x"); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	if calls != 1 {
		t.Fatalf("refresh was sent %d times; a retry could present a killed token", calls)
	}
}

func TestRefresh_ConnectionRefusedIsNotSent(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	_, _, err := New(url, time.Second).RefreshLoginToken(context.Background(), "x")
	var ue *Error
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) || ue.Sent || ue.MayStillApply() {
		t.Fatalf("err = %#v, want unavailable and not sent", err)
	}
}

func TestRefresh_TimeoutIsSentAndMayStillApply(t *testing.T) {
	c := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}), 200*time.Millisecond)
	_, _, err := c.RefreshLoginToken(context.Background(), "x")
	var ue *Error
	if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) || !ue.MayStillApply() || !strings.Contains(err.Error(), "timed out") {
		t.Fatalf("err = %#v", err)
	}
}

func TestRefresh_KeepsTokenOfAPartialAnswer(t *testing.T) {
	c := serve(t, statusHandler(500, "application/json",
		`{"data":{"refreshApiUserLoginToken":"new"},"errors":[{"message":"audit sink slow","extensions":{"code":503}}]}`), time.Second)
	tok, notes, err := c.RefreshLoginToken(context.Background(), "x")
	if err != nil || tok != "new" || !strings.Contains(notes, "audit sink slow") {
		t.Fatalf("tok=%q notes=%q err=%v", tok, notes, err)
	}
}

func TestSanitize_RedactsFlattensAndBounds(t *testing.T) {
	cases := map[string]string{
		"plain":                                 "plain",
		"a\nb\x00c":                             "a b c",
		"tok eyJhbGciOi.eyJzdWIiOi.sig1234 end": "tok [redacted] end",
		strings.Repeat("x ", 250):               strings.Repeat("x ", 100) + "…",
	}
	for in, want := range cases {
		if got := sanitize(in); got != want {
			t.Errorf("sanitize(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCloseIdle_OnANilClientDoesNothing: a mount without a client yet can be cleaned up.
func TestCloseIdle_OnANilClientDoesNothing(t *testing.T) {
	var c *Client
	c.CloseIdle()
	serve(t, http.NotFoundHandler(), time.Second).CloseIdle()
}

// TestNew_NetworkTransportIsBoundedByTheTimeout: without a test transport, dialing, the TLS
// handshake and the answer's headers are each bounded by the client's timeout, idle connections
// are closed after 90 s, the environment's proxy is used and redirects are never followed.
func TestNew_NetworkTransportIsBoundedByTheTimeout(t *testing.T) {
	c := New(DefaultURL, 7*time.Second)
	defer c.CloseIdle()
	st, ok := c.http.Transport.(*statusTransport)
	if !ok {
		t.Fatalf("transport %T, want the status transport", c.http.Transport)
	}
	tr, ok := st.base.(*http.Transport)
	if !ok {
		t.Fatalf("base transport %T, want *http.Transport", st.base)
	}
	if c.http.Timeout != 7*time.Second || tr.TLSHandshakeTimeout != 7*time.Second || tr.ResponseHeaderTimeout != 7*time.Second ||
		tr.IdleConnTimeout != 90*time.Second || tr.Proxy == nil || tr.DialContext == nil {
		t.Fatalf("client timeout %s, transport %+v", c.http.Timeout, tr)
	}
	if err := c.http.CheckRedirect(nil, nil); err != http.ErrUseLastResponse {
		t.Fatalf("redirect policy %v, want the last response kept", err)
	}
}

// TestRetryBackOff_WaitsAboutTwoHundredMillisecondsThenDoublesToTwoSeconds: retries of an
// idempotent call wait 200 ms, 400 ms, 800 ms, 1.6 s, then 2 s, each ±30%; WithoutRetryWait
// makes them immediate.
func TestRetryBackOff_WaitsAboutTwoHundredMillisecondsThenDoublesToTwoSeconds(t *testing.T) {
	bo := New(DefaultURL, time.Second).retryBackOff()
	bo.Reset()
	for i, base := range []time.Duration{200, 400, 800, 1600, 2000, 2000} {
		base *= time.Millisecond
		lo, hi := base*7/10, base*13/10
		if d := bo.NextBackOff(); d < lo || d > hi {
			t.Fatalf("wait %d = %s, want within [%s, %s]", i+1, d, lo, hi)
		}
	}
	if d := New(DefaultURL, time.Second, WithoutRetryWait()).retryBackOff().NextBackOff(); d != 0 {
		t.Fatalf("WithoutRetryWait waits %s", d)
	}
}

// TestRetryable_OnlyOutagesAndShortRateLimitsAreRetried: a 5xx, a timeout or a 429 asking for at
// most 5 s is tried again (a Retry-After is waited, rounded up to whole seconds); a longer
// Retry-After goes back to the caller, and everything else is final.
func TestRetryable_OnlyOutagesAndShortRateLimitsAreRetried(t *testing.T) {
	cases := []struct {
		name      string
		err       error
		permanent bool
		waitFor   time.Duration // the Retry-After waited, if any
	}{
		{"5xx", &Error{Kind: ErrUnavailable, Status: 503}, false, 0},
		{"429 without Retry-After", &Error{Kind: ErrRateLimited, Status: 429}, false, 0},
		{"429, 1 s", &Error{Kind: ErrRateLimited, Status: 429, RetryAfter: time.Second}, false, time.Second},
		{"429, 1.5 s", &Error{Kind: ErrRateLimited, Status: 429, RetryAfter: 1500 * time.Millisecond}, false, 2 * time.Second},
		{"429, 5 s", &Error{Kind: ErrRateLimited, Status: 429, RetryAfter: 5 * time.Second}, false, 5 * time.Second},
		{"429, 5 s and a bit", &Error{Kind: ErrRateLimited, Status: 429, RetryAfter: 5*time.Second + time.Millisecond}, true, 0},
		{"429, an hour", &Error{Kind: ErrRateLimited, Status: 429, RetryAfter: time.Hour}, true, 0},
		{"rejected", &Error{Kind: ErrUnauthorized, Status: 200}, true, 0},
		{"refused", &Error{Kind: ErrRefused, Status: 403}, true, 0},
		{"bad answer", &Error{Kind: ErrBadResponse, Status: 404}, true, 0},
		{"untyped", errors.New("boom"), true, 0},
	}
	for _, tc := range cases {
		got := retryable(tc.err)
		var perm *backoff.PermanentError
		var after *backoff.RetryAfterError
		switch {
		case errors.As(got, &perm) != tc.permanent:
			t.Errorf("%s: %v, permanent want %v", tc.name, got, tc.permanent)
		case tc.waitFor > 0 && (!errors.As(got, &after) || after.Duration != tc.waitFor):
			t.Errorf("%s: %#v, want a wait of %s", tc.name, got, tc.waitFor)
		case tc.waitFor == 0 && errors.As(got, &after):
			t.Errorf("%s: waits %s, want none", tc.name, after.Duration)
		}
	}
}
