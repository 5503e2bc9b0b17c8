package inabitapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
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
	field, _ := req.Context().Value(fieldKey{}).(string)
	ans, isGraphQL := parseGraphQL(body)
	if note, ok := req.Context().Value(noteKey{}).(*answerNote); ok && len(ans.Errors) > 0 {
		note.errors = sanitize(errorText(ans.Errors))
	}
	if tok, ok := ans.token(field); isGraphQL && ok {
		// An answer that carries the token is kept whatever its status or errors say: for a
		// refresh, inabit has already killed the old token. query() reports the errors.
		return withBody(res, canonicalBody(map[string]json.RawMessage{field: jsonString(tok)}, ans.Errors)), nil
	}
	if ue := statusError(res, ans, isGraphQL, body); ue != nil {
		return nil, ue
	}
	return withBody(res, canonicalBody(ans.Data, ans.Errors)), nil
}

// fieldKey carries, in a request's context, the data field that holds the call's token.
type fieldKey struct{}

// noteKey carries, in a request's context, an *answerNote for what the answer's GraphQL errors
// said: the operator's log may show it, an error's text may not.
type noteKey struct{}

type answerNote struct{ errors string }

// withBody replaces res's (consumed) body with body.
func withBody(res *http.Response, body []byte) *http.Response {
	res.Body = io.NopCloser(bytes.NewReader(body))
	res.ContentLength = int64(len(body))
	res.Header.Del("Content-Length")
	return res
}

// canonicalBody is a GraphQL answer machinebox always decodes: data an object or null, and at
// most one error whose message sums up the errors by code (errorsSummary), never by message. machinebox is then only the sender;
// what the answer means was decided here, by a parser that tolerates what inabit or a gateway
// may send (a malformed errors member, a byte-order mark), and only the first error would
// otherwise reach the caller.
func canonicalBody(data map[string]json.RawMessage, errs []graphQLError) []byte {
	type message struct {
		Message string `json:"message"`
	}
	out := struct {
		Data   map[string]json.RawMessage `json:"data"`
		Errors []message                  `json:"errors,omitempty"`
	}{Data: data}
	if len(errs) > 0 {
		out.Errors = []message{{Message: errorsSummary(errs)}}
	}
	b, err := json.Marshal(out)
	if err != nil { // data holds only values json.Unmarshal accepted; cannot happen
		return []byte(`{"data":null,"errors":[{"message":"answer could not be re-encoded"}]}`)
	}
	return b
}

func jsonString(s string) json.RawMessage {
	b, _ := json.Marshal(s)
	return b
}

// errorText joins the errors' messages (or codes) for the operator's log (answerNote), to be
// sanitised before it is kept.
func errorText(errs []graphQLError) string {
	parts := make([]string, 0, len(errs))
	for _, e := range errs {
		switch {
		case strings.TrimSpace(e.Message) != "":
			parts = append(parts, e.Message)
		case e.Code != "":
			parts = append(parts, "code "+e.Code)
		}
	}
	if len(parts) == 0 {
		return "an error without a message"
	}
	return strings.Join(parts, "; ")
}

type graphQLAnswer struct {
	Data   map[string]json.RawMessage // nil when data is null or absent
	Errors []graphQLError
}

type graphQLError struct {
	Message string
	Code    string
}

// utf8BOM is what some gateways and Windows tools put before a JSON body.
var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// trimLead strips leading whitespace and byte-order marks.
func trimLead(body []byte) []byte {
	for {
		b := bytes.TrimPrefix(bytes.TrimLeft(body, " \t\r\n"), utf8BOM)
		if len(b) == len(body) {
			return b
		}
		body = b
	}
}

// parseGraphQL reads body as a GraphQL answer; ok is false when it is not one (an HTML page,
// garbage, or JSON without data or errors), i.e. when it cannot be inabit's own answer. Only the
// top-level shape decides: errors are read tolerantly (a list or a single error, messages and
// extensions of any JSON type), since a malformed errors member must not turn an answer that
// carries the new token into "garbage".
func parseGraphQL(body []byte) (ans graphQLAnswer, ok bool) {
	var top map[string]json.RawMessage
	if json.Unmarshal(trimLead(body), &top) != nil {
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
	ans.Errors = looseErrors(rawErrors)
	return ans, true
}

// looseErrors reads an errors member whatever its shape: a list, or one error on its own.
func looseErrors(raw json.RawMessage) []graphQLError {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var list []json.RawMessage
	if json.Unmarshal(raw, &list) != nil {
		list = []json.RawMessage{raw}
	}
	errs := make([]graphQLError, 0, len(list))
	for _, item := range list {
		var obj struct {
			Message    json.RawMessage `json:"message"`
			Extensions json.RawMessage `json:"extensions"`
		}
		if json.Unmarshal(item, &obj) != nil || string(item) == "null" {
			errs = append(errs, graphQLError{Message: looseString(item)})
			continue
		}
		var ext struct {
			Code json.RawMessage `json:"code"`
		}
		_ = json.Unmarshal(obj.Extensions, &ext)
		errs = append(errs, graphQLError{Message: looseString(obj.Message), Code: looseString(ext.Code)})
	}
	return errs
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
		// The code decides when there is one (a FORBIDDEN whose message says "Unauthorized" is a
		// role without the right, not a dead token); the message only when there is none.
		switch {
		case code == "UNAUTHENTICATED":
			return ErrUnauthorized, e.Message
		case code == "FORBIDDEN":
			return ErrRefused, e.Message
		case code == "" && (strings.Contains(msg, "unauthorized") || strings.Contains(msg, "unauthenticated")):
			return ErrUnauthorized, e.Message
		}
	}
	return nil, ""
}

// token is the non-empty string, trimmed of surrounding whitespace, in data.<field> (any field
// when field is empty).
func (a graphQLAnswer) token(field string) (string, bool) {
	for name, raw := range a.Data {
		if field != "" && name != field {
			continue
		}
		var s string
		if json.Unmarshal(raw, &s) == nil && strings.TrimSpace(s) != "" {
			return strings.TrimSpace(s), true
		}
	}
	return "", false
}

// statusError classifies an answer that does not carry the call's token; nil means a GraphQL
// answer at 2xx, which query() reads. Detail says only what kind of answer it was; what it said
// goes to Said, for the operator's log.
func statusError(res *http.Response, ans graphQLAnswer, isGraphQL bool, body []byte) *Error {
	status := res.StatusCode
	authKind, _ := ans.authError()
	shape, said := answerShape(body, ans, isGraphQL), logHint(body)
	switch {
	case status == http.StatusTooManyRequests:
		return &Error{Kind: ErrRateLimited, Status: status, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After")), Said: said, Sent: true, Answered: true}
	case status >= 500:
		// A gateway's 502/504 can come back while inabit is still working on the call.
		return &Error{Kind: ErrUnavailable, Status: status, Detail: shape, Said: said, Sent: true}
	case isGraphQL && authKind != nil:
		// Only inabit's own GraphQL answer can say the login token is dead.
		return &Error{Kind: authKind, Status: status, Detail: shape, Said: said, Sent: true, Answered: true}
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) && isGraphQL:
		// inabit's own GraphQL answer refusing the call: it is over, and proves the token alive
		// enough to be authorised or not.
		return &Error{Kind: ErrRefused, Status: status, Detail: shape, Said: said, Sent: true, Answered: true}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// Any 401/403 that is not a GraphQL answer (a gateway's {"message":"Unauthorized"}, an
		// HTML page, plain text, nothing) is what a gateway, WAF or proxy sends: it proves nothing
		// about the token, and inabit may still have received and applied the call.
		return &Error{Kind: ErrRefused, Status: status, Detail: shape, Said: said, Sent: true}
	case status < 200 || status > 299:
		return &Error{Kind: ErrBadResponse, Status: status, Detail: shape, Said: said, Sent: true, Answered: isGraphQL}
	case !isGraphQL:
		return &Error{Kind: ErrBadResponse, Status: status, Detail: shape, Said: said, Sent: true}
	}
	return nil
}

// answerShape says what kind of answer came back, in words that never repeat it: an error's text
// reaches whoever wrote config, and anyone who can write config can point url at an internal
// service. Only GraphQL error codes from a fixed list are named.
func answerShape(body []byte, ans graphQLAnswer, isGraphQL bool) string {
	trimmed := trimLead(body)
	switch {
	case len(trimmed) == 0:
		return "an empty answer"
	case isGraphQL && len(ans.Errors) > 0:
		return errorsSummary(ans.Errors)
	case isGraphQL:
		return "a GraphQL answer without the token"
	case looksHTML(trimmed):
		return "an HTML page, not a GraphQL answer (a proxy, gateway or other web server answered)"
	case json.Valid(trimmed):
		return "JSON that is not a GraphQL answer"
	}
	return "text that is neither JSON nor HTML"
}

// knownCodes are the GraphQL error codes an error text may name: inabit's and the common
// server libraries' vocabulary. Any other code is reported as unrecognised, not quoted.
var knownCodes = map[string]bool{
	"UNAUTHENTICATED": true, "FORBIDDEN": true, "BAD_USER_INPUT": true, "BAD_REQUEST": true,
	"INTERNAL": true, "INTERNAL_SERVER_ERROR": true, "NOT_FOUND": true, "TOO_MANY_REQUESTS": true,
	"GRAPHQL_PARSE_FAILED": true, "GRAPHQL_VALIDATION_FAILED": true, "PERSISTED_QUERY_NOT_FOUND": true,
	"OPERATION_RESOLUTION_FAILURE": true, "TIMEOUT": true, "SERVICE_UNAVAILABLE": true,
}

// errorsSummary names an answer's GraphQL errors by count and code, never by message.
func errorsSummary(errs []graphQLError) string {
	var codes []string
	unknown := false
	for _, e := range errs {
		code := strings.ToUpper(strings.TrimSpace(e.Code))
		switch {
		case code == "":
		case knownCodes[code]:
			if !slices.Contains(codes, code) {
				codes = append(codes, code)
			}
		default:
			unknown = true
		}
	}
	if unknown {
		codes = append(codes, "an unrecognised code")
	}
	what := "a GraphQL error"
	if len(errs) > 1 {
		what = strconv.Itoa(len(errs)) + " GraphQL errors"
	}
	if len(codes) == 0 {
		return what + " without a code"
	}
	return what + " (code " + strings.Join(codes, ", ") + ")"
}

func looksHTML(body []byte) bool {
	return strings.HasPrefix(strings.TrimSpace(string(body)), "<")
}

// logHint gives the operator's log a clue (an HTML title, a short JSON message), sanitised and
// redacted, without echoing the body wholesale. Never in an error's text: see answerShape.
func logHint(body []byte) string {
	s := string(body)
	// Lower-case ASCII only, byte for byte: strings.ToLower can change the length of invalid
	// UTF-8 (a Latin-1 proxy page), and indexes into it would then overrun s.
	lower := asciiLower(s)
	if i := strings.Index(lower, "<title>"); i >= 0 {
		start := i + len("<title>")
		if j := strings.Index(lower[start:], "</title>"); j >= 0 {
			if title := sanitize(s[start : start+j]); title != "" {
				return "HTML page: " + title
			}
			return "HTML page"
		}
	}
	if looksHTML(body) {
		return "HTML page"
	}
	return sanitize(s)
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
