package inabitapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestError_TextNamesKindStatusDetailAndRetryAfter: an error's text is its kind, the HTTP status
// when an answer came, its detail and the Retry-After when there is one, and nothing for what
// is absent.
func TestError_TextNamesKindStatusDetailAndRetryAfter(t *testing.T) {
	cases := []struct {
		err  Error
		want string
	}{
		{Error{Kind: ErrUnavailable, Detail: "timed out waiting for an answer", Sent: true}, "inabit is unavailable: timed out waiting for an answer"},
		{Error{Kind: ErrUnavailable, Status: 502, Detail: "HTML page"}, "inabit is unavailable (HTTP 502): HTML page"},
		{Error{Kind: ErrRateLimited, Status: 429, RetryAfter: 42 * time.Second}, "inabit rate-limited the request (HTTP 429); retry after 42s"},
		{Error{Kind: ErrRateLimited, Status: 429}, "inabit rate-limited the request (HTTP 429)"},
		{Error{Kind: ErrRefused}, "inabit, or a proxy in front of it, refused the request"},
	}
	for _, tc := range cases {
		if got := tc.err.Error(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestCalls_ConnectionLostAfterDialMayStillApply: a connection that breaks after it was made
// (reset, cut short) may have carried the call to inabit: unavailable, sent, not answered.
func TestCalls_ConnectionLostAfterDialMayStillApply(t *testing.T) {
	for _, cause := range []error{syscall.ECONNRESET, io.ErrUnexpectedEOF} {
		c := New("http://127.0.0.1/graphql", time.Second, WithoutRetryWait(), WithTransport(roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, cause
		})))
		_, _, err := c.RefreshLoginToken(context.Background(), "x")
		var ue *Error
		if !errors.As(err, &ue) || !errors.Is(err, ErrUnavailable) || !ue.MayStillApply() || ue.Status != 0 {
			t.Fatalf("%v: err = %#v, want unavailable, sent and unanswered", cause, err)
		}
		if want := "inabit is unavailable: connection failed: "; !strings.HasPrefix(err.Error(), want) {
			t.Fatalf("%v: err = %q, want it to start %q", cause, err, want)
		}
	}
}
