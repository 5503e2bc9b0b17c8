package inabitapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestRetryAfter_IsBoundedAndNeverNegative(t *testing.T) {
	if MaxRetryAfter != time.Hour {
		t.Fatalf("MaxRetryAfter = %s, want 1h", MaxRetryAfter)
	}
	cases := map[string]time.Duration{
		"":                              0,
		"0":                             0,
		"5":                             5 * time.Second,
		" 120 ":                         2 * time.Minute,
		"3600":                          MaxRetryAfter,
		"3601":                          MaxRetryAfter,
		"86400":                         MaxRetryAfter,
		"10000000000":                   MaxRetryAfter, // seconds that overflow a Duration
		"99999999999999999999999":       MaxRetryAfter, // more than an int holds
		"-3":                            0,
		"-99999999999999999999999":      0,
		"soon":                          0,
		"1.5":                           0,
		"Wed, 21 Oct 2015 07:28:00 GMT": 0, // in the past
		"Fri, 31 Dec 9999 23:59:59 GMT": MaxRetryAfter,
	}
	for in, want := range cases {
		if got := parseRetryAfter(in); got != want {
			t.Errorf("parseRetryAfter(%q) = %s, want %s", in, got, want)
		}
	}
	for _, ahead := range []time.Duration{90 * time.Second, 3 * time.Hour} {
		want := min(ahead, MaxRetryAfter)
		date := time.Now().Add(ahead).UTC().Format(http.TimeFormat)
		if got := parseRetryAfter(date); got < want-5*time.Second || got > want+time.Second {
			t.Errorf("parseRetryAfter(date in %s) = %s, want about %s", ahead, got, want)
		}
	}
}

func TestRateLimited_ReportsRetryAfterAtMostAnHour(t *testing.T) {
	c := answering(429, http.Header{"Retry-After": {"86400"}}, nil)
	_, _, err := c.RefreshLoginToken(context.Background(), "x")
	var ue *Error
	if !errors.As(err, &ue) || !errors.Is(err, ErrRateLimited) || ue.RetryAfter != time.Hour || !strings.Contains(err.Error(), "retry after 1h0m0s") {
		t.Fatalf("err = %v (%+v), want rate-limited, retry after 1h", err, ue)
	}
}

// Every 429 is noticed, with its Retry-After: the ones a retry got past as well as the last one,
// and for both queries; other answers are not.
func TestRateLimitNotice_SeesEvery429IncludingRetriedOnes(t *testing.T) {
	var calls int
	var notices []time.Duration
	c := New("http://127.0.0.1/graphql", time.Second, WithoutRetryWait(),
		WithRateLimitNotice(func(d time.Duration) { notices = append(notices, d) }),
		WithTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
			calls++
			if calls <= 2 {
				return &http.Response{StatusCode: 429, Header: http.Header{"Retry-After": {fmt.Sprint(calls - 1)}}, Body: http.NoBody, Request: r}, nil
			}
			if calls == 4 {
				return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: r}, nil
			}
			return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
				Body: io.NopCloser(strings.NewReader(`{"data":{"getApiUserAccessToken":"tok"}}`)), Request: r}, nil
		})))
	if tok, err := c.AccessToken(context.Background(), "x"); err != nil || tok != "tok" {
		t.Fatalf("AccessToken = %q, %v after two 429s, want the token", tok, err)
	}
	if len(notices) != 2 || notices[0] != 0 || notices[1] != time.Second {
		t.Fatalf("notices %v, want [0s 1s]", notices)
	}
	_, _ = c.AccessToken(context.Background(), "x") // a 503, then the token: no notice
	if len(notices) != 2 {
		t.Fatalf("a 503 was noticed as a 429: %v", notices)
	}
	r := answering(429, nil, nil)
	r.onRateLimited = func(d time.Duration) { notices = append(notices, d) }
	if _, _, err := r.RefreshLoginToken(context.Background(), "x"); !errors.Is(err, ErrRateLimited) || len(notices) != 3 || notices[2] != 0 {
		t.Fatalf("refresh 429 without Retry-After: err %v, notices %v", err, notices)
	}
}
