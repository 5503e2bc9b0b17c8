package inabitapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// answering is a client whose every call gets status and body.
func answering(status int, header http.Header, body []byte) *Client {
	if header == nil {
		header = http.Header{}
	}
	return New("http://127.0.0.1/graphql", time.Second, WithoutRetryWait(), WithTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: status, Header: header, Body: io.NopCloser(bytes.NewReader(body)), Request: r}, nil
	})))
}

// FuzzResponseDecoding: whatever inabit (or a proxy) answers, a call returns a non-empty token or
// a typed *Error whose text has no control characters.
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
		tok, err := answering(status, nil, body).AccessToken(context.Background(), "login")
		if err == nil {
			if strings.TrimSpace(tok) == "" {
				t.Fatal("empty token accepted")
			}
			return
		}
		var ue *Error
		if !errors.As(err, &ue) {
			t.Fatalf("untyped error %T: %v", err, err)
		}
		if strings.ContainsFunc(err.Error(), func(r rune) bool { return r < 0x20 }) {
			t.Fatalf("error carries control characters: %q", err.Error())
		}
	})
}
