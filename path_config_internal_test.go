package inabit

// Tests that config can not be used to read internal services: whatever a url answers, what comes
// back to the writer (the 400, the stored status) names the kind of answer, never its content.

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

const internalSecret = "Payroll Q3 4242" // words, so redaction of token-like strings cannot hide a quote

// internalService answers every POST like some internal HTTP service would, quoting a secret.
func internalService(t *testing.T, status int, contentType, body string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", contentType)
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/internal"
}

// madeUpToken is what someone without the login token can write: any JWT-shaped string.
func madeUpToken(t *testing.T) string {
	return makeJWT(t, jwt.MapClaims{"sub": "nobody", "exp": time.Now().Add(30 * 24 * time.Hour).Unix()})
}

func TestConfigWriteNeverQuotesWhatTheURLAnswers(t *testing.T) {
	answers := []struct {
		status      int
		contentType string
		body        string
	}{
		{200, "text/html", "<html><title>" + internalSecret + "</title></html>"},
		{200, "application/json", `{"message":"` + internalSecret + `"}`},
		{200, "application/json", `{"errors":[{"message":"` + internalSecret + `"}]}`},
		{401, "application/json", `{"errors":[{"message":"unauthorized: ` + internalSecret + `"}]}`},
		{403, "text/plain", internalSecret},
		{404, "text/plain", internalSecret},
		{500, "application/json", `{"error":"` + internalSecret + `"}`},
		{502, "text/html", "<html><title>" + internalSecret + "</title></html>"},
	}
	for _, a := range answers {
		t.Run(fmt.Sprintf("%d %s", a.status, a.contentType), func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			url := internalService(t, a.status, a.contentType, a.body)
			resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{
				"login_token": madeUpToken(t), "url": url, "request_timeout": 2,
			})
			text := fmt.Sprint(err)
			if resp != nil {
				text += fmt.Sprint(resp.Data, resp.Warnings)
			}
			if strings.Contains(text, internalSecret) {
				t.Fatalf("the config write quotes the internal service's answer: %s", text)
			}
			if err == nil && (resp == nil || !resp.IsError()) {
				t.Fatalf("a made-up token at an internal url was accepted: %v", resp)
			}
		})
	}
}

// The same holds for a url written without verification: the status a tick stores, and the
// errors reads return, never quote the answer.
func TestRotationStatusNeverQuotesWhatTheURLAnswers(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	url := internalService(t, 500, "text/html", "<html><title>"+internalSecret+"</title></html>")
	env.configure(t, map[string]interface{}{"url": url, "verify_connection": false, "login_token": madeUpToken(t), "rotation_period": "1h"})
	readErr := env.readTokenErr()
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil && strings.Contains(err.Error(), internalSecret) {
		t.Fatalf("rotate-root quotes the answer: %v", err)
	}
	resp, _ := env.request(logical.UpdateOperation, "rotate-root", nil)
	cfg := env.readConfig(t)
	all := fmt.Sprint(readErr, cfg, resp)
	if strings.Contains(all, internalSecret) {
		t.Fatalf("what a reader sees quotes the internal service: %s", all)
	}
	if readErr == nil {
		t.Fatal("setup: the read through an internal service succeeded")
	}
}
