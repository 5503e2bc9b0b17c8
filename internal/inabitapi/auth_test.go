package inabitapi

import (
	"errors"
	"net/http"
	"testing"
)

// Only inabit's own GraphQL answer can say the login token is dead; a gateway's or a WAF's 401
// says nothing about it, and a refresh that met one may still be applied.
func TestCalls_UnauthorizedOnlyFromInabitsGraphQLAnswer(t *testing.T) {
	type want struct {
		kind     error
		answered bool
	}
	proxy := want{ErrRefused, false}
	cases := []struct {
		name        string
		status      int
		contentType string
		body        string
		want        want
	}{
		{"gateway 401 JSON", 401, "application/json", `{"message":"Unauthorized"}`, proxy},
		{"gateway 401 JSON expired", 401, "application/json", `{"message":"expired"}`, proxy},
		{"gateway 401 text", 401, "text/plain", "Unauthorized", proxy},
		{"gateway 401 empty", 401, "text/plain", "", proxy},
		{"gateway 401 HTML", 401, "text/html", "<html><title>401 Authorization Required</title></html>", proxy},
		{"gateway 401 JSON list", 401, "application/json", `[{"message":"Unauthorized"}]`, proxy},
		{"gateway 403 JSON", 403, "application/json", `{"message":"Forbidden"}`, proxy},
		{"gateway 403 HTML", 403, "text/html", "<html><title>Forbidden</title></html>", proxy},
		{"inabit 401 UNAUTHENTICATED", 401, "application/json", `{"data":null,"errors":[{"message":"jwt expired","extensions":{"code":"UNAUTHENTICATED"}}]}`, want{ErrUnauthorized, true}},
		{"inabit 200 UNAUTHENTICATED", 200, "application/json", `{"errors":[{"message":"jwt expired","extensions":{"code":"UNAUTHENTICATED"}}]}`, want{ErrUnauthorized, true}},
		{"inabit 200 message unauthorized", 200, "application/json", `{"data":null,"errors":[{"message":"Unauthorized: invalid or expired login token"}]}`, want{ErrUnauthorized, true}},
		{"inabit 401 GraphQL without auth code", 401, "application/json", `{"errors":[{"message":"nope","extensions":{"code":"BAD_REQUEST"}}]}`, want{ErrRefused, true}},
		{"inabit 403 GraphQL without auth code", 403, "application/json", `{"data":null,"errors":[{"message":"not from this network","extensions":{"code":"BAD_REQUEST"}}]}`, want{ErrRefused, true}},
		{"inabit 200 FORBIDDEN", 200, "application/json", `{"errors":[{"message":"role may not","extensions":{"code":"FORBIDDEN"}}]}`, want{ErrRefused, true}},
	}
	for _, c := range bothCalls {
		for _, tc := range cases {
			t.Run(c.name+"/"+tc.name, func(t *testing.T) {
				_, _, err := c.do(answering(tc.status, http.Header{"Content-Type": {tc.contentType}}, []byte(tc.body)))
				var ue *Error
				if !errors.As(err, &ue) || !errors.Is(err, tc.want.kind) {
					t.Fatalf("err = %v, want %v", err, tc.want.kind)
				}
				if ue.Status != tc.status || !ue.Sent || ue.Answered != tc.want.answered || ue.MayStillApply() == tc.want.answered {
					t.Fatalf("err = %+v, want status %d, sent, answered=%v", ue, tc.status, tc.want.answered)
				}
			})
		}
	}
}

// TestErrorCodeDecidesOverMessage: a GraphQL error's code decides what it means; its message
// counts only when it has no code (found by review: a FORBIDDEN saying "Unauthorized" was LOST).
func TestErrorCodeDecidesOverMessage(t *testing.T) {
	cases := []struct {
		code, msg string
		want      error
	}{
		{"FORBIDDEN", "Unauthorized: the role may not", ErrRefused},
		{"UNAUTHENTICATED", "anything", ErrUnauthorized},
		{"", "Unauthorized", ErrUnauthorized},
		{"", "unauthenticated user", ErrUnauthorized},
		{"INTERNAL_SERVER_ERROR", "unauthorized access to the database", nil},
	}
	for _, tc := range cases {
		kind, _ := graphQLAnswer{Errors: []graphQLError{{Code: tc.code, Message: tc.msg}}}.authError()
		if kind != tc.want {
			t.Errorf("code %q message %q: %v, want %v", tc.code, tc.msg, kind, tc.want)
		}
	}
}
