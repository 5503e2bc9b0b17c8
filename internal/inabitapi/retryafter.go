package inabitapi

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// MaxRetryAfter is the longest Retry-After a caller is told to wait: a longer (or overflowing)
// one from a misconfigured gateway is capped, so a mount is never parked for days.
const MaxRetryAfter = time.Hour

// parseRetryAfter reads a Retry-After header, delta-seconds or an HTTP date, bounded by
// MaxRetryAfter; a negative, past or unreadable value is 0.
func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if strings.Trim(v, "0123456789") == "" {
		// delta-seconds (1*DIGIT); the only error left for digits is an overflow.
		secs, err := strconv.ParseUint(v, 10, 64)
		if err != nil || secs > uint64(MaxRetryAfter/time.Second) {
			return MaxRetryAfter
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return min(d.Round(time.Second), MaxRetryAfter)
		}
	}
	return 0
}
