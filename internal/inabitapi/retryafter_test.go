package inabitapi

import (
	"context"
	"errors"
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
