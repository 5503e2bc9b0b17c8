package inabitapi

import (
	"regexp"
	"strings"
)

// jwtLike matches anything shaped like a JWT so that no token echoed by upstream (or by us) can
// leave this package inside an error.
var jwtLike = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)

// maxDetail bounds the length of a redacted text.
const maxDetail = 200

// Redact makes s fit for an error message or a log line: anything that could be a token is
// replaced by "[redacted]", control characters become spaces, and the result is bounded.
func Redact(s string) string {
	s = jwtLike.ReplaceAllString(s, "[redacted]")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxDetail {
		s = s[:maxDetail] + "…"
	}
	return s
}
