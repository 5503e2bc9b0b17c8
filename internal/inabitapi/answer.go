package inabitapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strings"
)

// statusTransport reads the whole (bounded) body and turns HTTP status and GraphQL auth errors
// into typed errors before machinebox decodes anything: machinebox ignores status codes and
// would report an HTML 502 page as a JSON syntax error.
type statusTransport struct {
	base http.RoundTripper
}

// CloseIdleConnections lets http.Client.CloseIdleConnections reach the pooled transport.
func (t *statusTransport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t *statusTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(io.LimitReader(res.Body, maxResponseBytes+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxResponseBytes {
		return nil, &Error{Kind: ErrBadResponse, Status: res.StatusCode, Detail: "answer is larger than 1 MiB", Sent: true}
	}
	if ue := statusError(res, body); ue != nil {
		return nil, ue
	}
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	return res, nil
}

type graphQLAnswer struct {
	Data   map[string]json.RawMessage
	Errors []graphQLError
}

type graphQLError struct {
	Message string
	Code    string
}

// parseGraphQL reads body as a GraphQL answer; ok is false when it is not one (an HTML page,
// garbage, or JSON without data or errors), i.e. when it cannot be inabit's own answer. Only the
// top-level shape decides: errors' messages and extensions are free-form in GraphQL, and a
// numeric code must not turn an answer that carries the new token into "garbage".
func parseGraphQL(body []byte) (ans graphQLAnswer, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(body, &top) != nil {
		return ans, false
	}
	rawData, hasData := top["data"]
	rawErrors, hasErrors := top["errors"]
	if !hasData && !hasErrors {
		return ans, false
	}
	if hasData && string(rawData) != "null" && json.Unmarshal(rawData, &ans.Data) != nil {
		return ans, false // data must be an object
	}
	var errs []struct {
		Message    json.RawMessage `json:"message"`
		Extensions struct {
			Code json.RawMessage `json:"code"`
		} `json:"extensions"`
	}
	_ = json.Unmarshal(rawErrors, &errs)
	for _, e := range errs {
		ans.Errors = append(ans.Errors, graphQLError{Message: looseString(e.Message), Code: looseString(e.Extensions.Code)})
	}
	return ans, true
}

// looseString is a JSON string's value, or any other JSON value's text.
func looseString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return string(raw)
}

// authError finds an authentication or authorization error among a GraphQL answer's errors.
func (a graphQLAnswer) authError() (kind error, message string) {
	for _, e := range a.Errors {
		code := strings.ToUpper(e.Code)
		msg := strings.ToLower(e.Message)
		switch {
		case code == "UNAUTHENTICATED" || strings.Contains(msg, "unauthorized") || strings.Contains(msg, "unauthenticated"):
			return ErrUnauthorized, e.Message
		case code == "FORBIDDEN":
			return ErrRefused, e.Message
		}
	}
	return nil, ""
}

// hasToken says whether the answer carries a non-empty string in some data field: a partial
// answer whose token must reach the caller whatever its errors say.
func (a graphQLAnswer) hasToken() bool {
	for _, raw := range a.Data {
		var s string
		if json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != "" {
			return true
		}
	}
	return false
}

func statusError(res *http.Response, body []byte) *Error {
	status := res.StatusCode
	ans, isGraphQL := parseGraphQL(body)
	if isGraphQL && ans.hasToken() {
		// An answer that carries a token is kept whatever its status or errors say: for a
		// refresh, inabit has already killed the old token. query() reports the errors.
		return nil
	}
	authKind, authMsg := ans.authError()
	switch {
	case status == http.StatusTooManyRequests:
		return &Error{Kind: ErrRateLimited, Status: status, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After")), Sent: true, Answered: true}
	case status >= 500:
		// A gateway's 502/504 can come back while inabit is still working on the call.
		return &Error{Kind: ErrUnavailable, Status: status, Detail: bodyHint(body), Sent: true}
	case isGraphQL && authKind != nil:
		return &Error{Kind: authKind, Status: status, Detail: "GraphQL error: " + Redact(authMsg), Sent: true, Answered: true}
	case status == http.StatusUnauthorized && !looksHTML(body):
		return &Error{Kind: ErrUnauthorized, Status: status, Detail: bodyHint(body), Sent: true, Answered: true}
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) && isGraphQL:
		// inabit's own GraphQL answer refusing the call: it is over, and proves the token alive
		// enough to be authorised or not.
		return &Error{Kind: ErrRefused, Status: status, Detail: bodyHint(body), Sent: true, Answered: true}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// An HTML page or a bare 403 is what a WAF or proxy sends; it proves nothing about the token.
		return &Error{Kind: ErrRefused, Status: status, Detail: bodyHint(body), Sent: true}
	case status < 200 || status > 299:
		return &Error{Kind: ErrBadResponse, Status: status, Detail: bodyHint(body), Sent: true, Answered: isGraphQL}
	case !isGraphQL:
		return &Error{Kind: ErrBadResponse, Status: status, Detail: "answer is not GraphQL JSON" + hintSuffix(body), Sent: true}
	}
	return nil
}

func looksHTML(body []byte) bool {
	return strings.HasPrefix(strings.TrimSpace(string(body)), "<")
}

// bodyHint gives an operator a clue (an HTML title, a short JSON message) without echoing the
// body wholesale.
func bodyHint(body []byte) string {
	s := string(body)
	// Lower-case ASCII only, byte for byte: strings.ToLower can change the length of invalid
	// UTF-8 (a Latin-1 proxy page), and indexes into it would then overrun s.
	lower := asciiLower(s)
	if i := strings.Index(lower, "<title>"); i >= 0 {
		start := i + len("<title>")
		if j := strings.Index(lower[start:], "</title>"); j >= 0 {
			return "HTML page: " + Redact(s[start:start+j])
		}
	}
	if looksHTML(body) {
		return "HTML page"
	}
	return Redact(s)
}

func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

func hintSuffix(body []byte) string {
	if h := bodyHint(body); h != "" {
		return " (" + h + ")"
	}
	return ""
}
