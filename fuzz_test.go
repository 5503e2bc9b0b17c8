package inabit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
	"unicode"

	"github.com/golang-jwt/jwt/v5"
	"github.com/machinebox/graphql"
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

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func FuzzResponseDecoding(f *testing.F) {
	f.Add(200, []byte(`{"data":{"getApiUserAccessToken":"tok"}}`))
	f.Add(200, []byte(`{"errors":[{"message":"x","extensions":{"code":"UNAUTHENTICATED"}}]}`))
	f.Add(200, []byte(`{"data":null}`))
	f.Add(200, []byte(`<html><title>x</title></html>`))
	f.Add(502, []byte(`<html>`))
	f.Add(429, []byte(``))
	f.Add(200, []byte(`{"data":{"getApiUserAccessToken":["a"]}}`))
	f.Fuzz(func(t *testing.T, status int, body []byte) {
		if status < 100 || status > 999 {
			return
		}
		transport := &statusTransport{base: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: status, Header: http.Header{}, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
		})}
		c := &inabitClient{gql: graphql.NewClient("http://127.0.0.1/graphql", graphql.WithHTTPClient(&http.Client{Transport: transport, Timeout: time.Second}))}
		tok, err := c.query(context.Background(), queryAccessToken, "getApiUserAccessToken", "login")
		if err == nil {
			if strings.TrimSpace(tok) == "" {
				t.Fatal("empty token accepted")
			}
			return
		}
		var ue *UpstreamError
		if !errors.As(err, &ue) {
			t.Fatalf("untyped error %T: %v", err, err)
		}
		if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < 0x20 }) {
			t.Fatalf("error carries control characters: %q", err.Error())
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
