package inabit

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
)

func FuzzParseClaims(f *testing.F) {
	for _, seed := range []string{
		"", "a.b.c", "eyJhbGciOiJub25lIn0.eyJleHAiOjE4MDAwMDAwMDB9.",
		"eyJhbGciOiJIUzI1NiJ9.eyJpYXQiOjEsImV4cCI6Mn0.sig", "eyJhbGciOiJIUzI1NiJ9.eyJleHAiOiJ4In0.sig",
		"eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjEuNWUzMDB9.sig",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := parseClaims(tok)
		if err != nil {
			if !errors.Is(err, errNotJWT) && !errors.Is(err, jwt.ErrTokenMalformed) {
				t.Fatalf("untyped error: %v", err)
			}
			if len(tok) >= 8 && strings.Contains(err.Error(), tok) {
				t.Fatal("error quotes the token")
			}
			return
		}
		if (!c.IssuedAt.IsZero() && c.IssuedAt.Location() != time.UTC) || (!c.ExpiresAt.IsZero() && c.ExpiresAt.Location() != time.UTC) {
			t.Fatalf("claims not in UTC: %+v", c)
		}
	})
}

func FuzzConfigFields(f *testing.F) {
	for _, seed := range []string{
		"", "https://api.inabit.com/graphql", "http://127.0.0.1:8300/graphql", "http://10.0.0.1/x",
		"https://u:p@h/", "https://h/#f", "eyJhbGciOiJub25lIn0.eyJleHAiOjE4MDAwMDAwMDB9.", "Bearer x.y.z", "\x00",
	} {
		f.Add(seed)
	}
	now := time.Unix(1_790_000_000, 0)
	f.Fuzz(func(t *testing.T, in string) {
		if tok, err := validateLoginToken(in, now); err == nil {
			if strings.IndexFunc(tok, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
				t.Fatalf("accepted token with whitespace: %q", tok)
			}
			if _, err := parseClaims(tok); err != nil {
				t.Fatalf("accepted token whose claims do not parse: %v", err)
			}
		} else if !strings.Contains(err.Error(), fieldLoginToken) {
			t.Fatalf("error does not name the field: %v", err)
		}
		if u, err := validateURL(in); err == nil {
			parsed, perr := url.Parse(u)
			if perr != nil || parsed.User != nil || parsed.Fragment != "" {
				t.Fatalf("accepted bad url %q", u)
			}
			if parsed.Scheme != "https" && !(parsed.Scheme == "http" && isLoopbackHost(parsed.Hostname())) {
				t.Fatalf("accepted insecure url %q", u)
			}
		} else if !strings.Contains(err.Error(), fieldURL) {
			t.Fatalf("error does not name the field: %v", err)
		}
	})
}
