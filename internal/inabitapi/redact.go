package inabitapi

import (
	"regexp"
	"strings"
)

var (
	// tokenish matches anything shaped like a JWT, or a long base64url run that could be a piece
	// of one (a signature echoed on its own), so that no token echoed by upstream (or by us) can
	// leave this package inside an error.
	tokenish = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*|[A-Za-z0-9_-]{24,}`)
	// lineBreaks is a run of line breaks, raw or JSON-escaped, with the spaces and tabs around
	// them: what a proxy or a pretty-printer puts into a token it wraps.
	lineBreaks = regexp.MustCompile(`[ \t]*(?:(?:\r\n|\r|\n|\\r|\\n)[ \t]*)+`)
	// uuidLike is a request or trace id: long and base64url, but no token's piece.
	uuidLike = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
)

// Redact replaces anything in s that could be a token, or a piece of one, by "[redacted]" and
// leaves the rest of s as it is. A token wrapped across lines counts as one: line breaks (raw
// or JSON-escaped "\n", with surrounding spaces and tabs) between base64url characters or dots
// are ignored when looking for tokens. Redacted are JWT-shaped runs and base64url runs of 24
// characters or more that hold a digit or are 40 long (a JWT signature is 43 or more);
// identifiers such as "refreshApiUserLoginToken" and UUIDs are kept.
func Redact(s string) string {
	joined, orig := joinWrapped(s)
	var b strings.Builder
	last := 0
	for _, m := range tokenish.FindAllStringIndex(joined, -1) {
		if !secretLooking(joined[m[0]:m[1]]) {
			continue
		}
		start, end := orig[m[0]], orig[m[1]-1]+1
		b.WriteString(s[last:start])
		b.WriteString("[redacted]")
		last = end
	}
	if last == 0 {
		return s
	}
	b.WriteString(s[last:])
	return b.String()
}

func secretLooking(run string) bool {
	switch {
	case strings.Contains(run, "."):
		return true // JWT-shaped
	case uuidLike.MatchString(run):
		return false
	default:
		return len(run) >= 40 || strings.ContainsAny(run, "0123456789")
	}
}

// joinWrapped drops from s the line breaks that sit between two characters a token is made of;
// orig[i] is the index in s of the joined string's byte i.
func joinWrapped(s string) (joined string, orig []int) {
	orig = make([]int, 0, len(s))
	var b strings.Builder
	last := 0
	for _, l := range lineBreaks.FindAllStringIndex(s, -1) {
		if l[0] == 0 || l[1] == len(s) || !isTokenByte(s[l[0]-1]) || !isTokenByte(s[l[1]]) {
			continue
		}
		b.WriteString(s[last:l[0]])
		for i := last; i < l[0]; i++ {
			orig = append(orig, i)
		}
		last = l[1]
	}
	b.WriteString(s[last:])
	for i := last; i < len(s); i++ {
		orig = append(orig, i)
	}
	return b.String(), orig
}

func isTokenByte(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.'
}

// maxDetail bounds the length of an error's detail.
const maxDetail = 200

// sanitize makes s fit for an error's detail: redacted, control characters turned to spaces,
// bounded.
func sanitize(s string) string {
	s = Redact(s)
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
