package inabit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/machinebox/graphql"
)

// This file is the only place that talks to inabit.

const (
	defaultURL = "https://api.inabit.com/graphql"

	queryAccessToken  = "query { getApiUserAccessToken }"
	queryRefreshLogin = "query { refreshApiUserLoginToken }"

	// maxResponseBytes bounds what a misbehaving upstream can make us buffer; a real answer is a
	// few hundred bytes.
	maxResponseBytes = 1 << 20

	// maxUpstreamAttempts bounds retries of idempotent calls so that a dead upstream costs a
	// reader seconds, not minutes.
	maxUpstreamAttempts = 3
	// maxRetryAfterWait is the longest Retry-After we honour inside one request; a longer one is
	// reported to the caller instead of holding a Vault request open.
	maxRetryAfterWait = 5 * time.Second
)

// Typed upstream errors. Callers match them with errors.Is; the concrete *UpstreamError carries the
// detail.
var (
	// ErrUnauthorized is inabit's own word that the login token is dead: a GraphQL
	// UNAUTHENTICATED error, or an HTTP 401 that is not an HTML page. Nothing else proves it.
	ErrUnauthorized = errors.New("inabit rejected the login token")
	// ErrRefused is a 401/403 HTML page, any other 403, or a GraphQL FORBIDDEN: a WAF, a proxy,
	// or a role without the right. It says nothing about whether the login token still works.
	ErrRefused             = errors.New("inabit, or a proxy in front of it, refused the request")
	ErrRateLimited         = errors.New("inabit rate-limited the request")
	ErrUpstreamUnavailable = errors.New("inabit is unavailable")
	ErrBadResponse         = errors.New("inabit returned a response that is not a valid answer")
)

// UpstreamError is what every failed inabit call returns. Its message never carries a token.
type UpstreamError struct {
	Kind       error         // one of the Err* sentinels above
	Status     int           // HTTP status, 0 when no response arrived
	RetryAfter time.Duration // from a 429's Retry-After header
	Detail     string        // sanitised, bounded detail
	// Sent is true when the request may have reached inabit, so a non-idempotent call may
	// have been applied even though we got no answer.
	Sent bool
	// Answered is true when inabit itself answered (a GraphQL error, a 401 or 429 of the API's):
	// the call is over and was not applied. Without it, a sent refresh may still be applied later.
	Answered bool
}

// MayStillApply says whether a refresh that failed this way may have been applied, or may yet be
// applied, by inabit: the request left this host and no answer of inabit's own came back. A
// timeout, a dropped connection, a 5xx or a proxy's page all leave inabit free to finish the call.
func (e *UpstreamError) MayStillApply() bool { return e.Sent && !e.Answered }

func (e *UpstreamError) Error() string {
	var b strings.Builder
	b.WriteString(e.Kind.Error())
	if e.Status != 0 {
		fmt.Fprintf(&b, " (HTTP %d)", e.Status)
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	if e.RetryAfter > 0 {
		fmt.Fprintf(&b, "; retry after %s", e.RetryAfter)
	}
	return b.String()
}

func (e *UpstreamError) Unwrap() error { return e.Kind }

// jwtLike matches anything shaped like a JWT so that no token echoed by upstream (or by us) can
// leave this file inside an error.
var jwtLike = regexp.MustCompile(`[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*`)

func sanitize(s string) string {
	s = jwtLike.ReplaceAllString(s, "[redacted]")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	const maxDetail = 200
	if len(s) > maxDetail {
		s = s[:maxDetail] + "…"
	}
	return s
}

// inabitClient talks GraphQL to one inabit endpoint.
type inabitClient struct {
	gql  *graphql.Client
	http *http.Client
	// noRetryWait makes retries immediate (deterministic simulation only).
	noRetryWait bool
}

func newInabitClient(endpoint string, timeout time.Duration) *inabitClient {
	return newInabitClientWith(endpoint, timeout, nil, false)
}

// newInabitClientWith lets tests put an in-process inabit under the client's status handling.
func newInabitClientWith(endpoint string, timeout time.Duration, base http.RoundTripper, noRetryWait bool) *inabitClient {
	if base == nil {
		base = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   4,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}
	}
	httpClient := &http.Client{
		Timeout:   timeout,
		Transport: &statusTransport{base: base},
		// A redirect would resend the bearer token to wherever upstream points; refuse it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// machinebox's Log hook prints headers and bodies, which hold tokens: it keeps its no-op
	// default and is never assigned.
	return &inabitClient{gql: graphql.NewClient(endpoint, graphql.WithHTTPClient(httpClient)), http: httpClient, noRetryWait: noRetryWait}
}

// closeIdle releases the connections of a client the mount no longer uses.
func (c *inabitClient) closeIdle() {
	if c != nil {
		c.http.CloseIdleConnections()
	}
}

// AccessToken asks for a short-lived access token. It is idempotent, so transient faults are
// retried a bounded number of times.
func (c *inabitClient) AccessToken(ctx context.Context, loginToken string) (string, error) {
	return backoff.Retry(ctx, func() (string, error) {
		tok, err := c.query(ctx, queryAccessToken, "getApiUserAccessToken", loginToken)
		var partial *partialAnswer
		if errors.As(err, &partial) {
			// A token in the answer is inabit's word that the login token works.
			return partial.token, nil
		}
		if err == nil {
			return tok, nil
		}
		return "", retryable(err)
	},
		backoff.WithBackOff(c.retryBackOff()),
		backoff.WithMaxTries(maxUpstreamAttempts))
}

func (c *inabitClient) retryBackOff() backoff.BackOff {
	if c.noRetryWait {
		return &backoff.ZeroBackOff{}
	}
	return &backoff.ExponentialBackOff{
		InitialInterval: 200 * time.Millisecond, RandomizationFactor: 0.3,
		Multiplier: 2, MaxInterval: 2 * time.Second,
	}
}

// RefreshLoginToken trades the login token for a new one; inabit kills the old one at once. It
// is never retried here: a second attempt after an applied-but-unanswered refresh would present
// a dead token. The caller decides, after probing, whether anything happened.
//
// An answer that carries the new token is a success whatever else it says: GraphQL allows data
// and errors together, and throwing the token away would lose the login token. answerErrors then
// holds the (redacted) error messages for the caller to log.
func (c *inabitClient) RefreshLoginToken(ctx context.Context, loginToken string) (newToken, answerErrors string, err error) {
	tok, err := c.query(ctx, queryRefreshLogin, "refreshApiUserLoginToken", loginToken)
	var partial *partialAnswer
	if errors.As(err, &partial) {
		return partial.token, partial.errors, nil
	}
	return tok, "", err
}

// partialAnswer is an answer with both the requested token and GraphQL errors.
type partialAnswer struct {
	token  string
	errors string
}

func (p *partialAnswer) Error() string { return "partial GraphQL answer: " + p.errors }

// retryable marks which failures are worth another attempt of an idempotent call.
func retryable(err error) error {
	var ue *UpstreamError
	if !errors.As(err, &ue) {
		return backoff.Permanent(err)
	}
	switch {
	case errors.Is(ue, ErrUpstreamUnavailable):
		return err
	case errors.Is(ue, ErrRateLimited) && ue.RetryAfter <= maxRetryAfterWait:
		if ue.RetryAfter > 0 {
			return backoff.RetryAfter(int((ue.RetryAfter + time.Second - 1) / time.Second))
		}
		return err
	default:
		return backoff.Permanent(err)
	}
}

func (c *inabitClient) query(ctx context.Context, q, field, loginToken string) (string, error) {
	req := graphql.NewRequest(q)
	req.Header.Set("Authorization", "Bearer "+loginToken)
	var resp map[string]json.RawMessage
	runErr := c.gql.Run(ctx, req, &resp)
	// machinebox decodes data before it reports the first GraphQL error, so a partial answer's
	// token is in resp even when runErr is set.
	tok, tokErr := tokenField(resp, field)
	if runErr != nil {
		if tokErr == nil && strings.HasPrefix(runErr.Error(), "graphql: ") {
			return "", &partialAnswer{token: tok, errors: sanitize(strings.TrimPrefix(runErr.Error(), "graphql: "))}
		}
		return "", classify(ctx, runErr)
	}
	return tok, tokErr
}

func tokenField(resp map[string]json.RawMessage, field string) (string, error) {
	raw, ok := resp[field]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return "", &UpstreamError{Kind: ErrBadResponse, Status: http.StatusOK, Detail: "no " + field + " in the answer", Sent: true}
	}
	var tok string
	if err := json.Unmarshal(raw, &tok); err != nil || strings.TrimSpace(tok) == "" {
		return "", &UpstreamError{Kind: ErrBadResponse, Status: http.StatusOK, Detail: field + " is not a non-empty string", Sent: true}
	}
	return tok, nil
}

// classify turns whatever machinebox or net/http returned into an *UpstreamError.
func classify(ctx context.Context, err error) error {
	var ue *UpstreamError
	if errors.As(err, &ue) {
		return ue
	}
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		// Nothing left this host: safe to say the request was not applied.
		return &UpstreamError{Kind: ErrUpstreamUnavailable, Detail: "cannot connect: " + sanitize(opErr.Err.Error())}
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return &UpstreamError{Kind: ErrUpstreamUnavailable, Detail: "timed out waiting for an answer", Sent: true}
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return &UpstreamError{Kind: ErrUpstreamUnavailable, Detail: "request cancelled", Sent: true}
	case strings.HasPrefix(err.Error(), "decoding response"):
		return &UpstreamError{Kind: ErrBadResponse, Status: http.StatusOK, Detail: "answer is not GraphQL JSON", Sent: true}
	case strings.HasPrefix(err.Error(), "graphql: "):
		// A GraphQL error that statusTransport did not recognise as an auth failure: inabit
		// answered, so the call is over.
		return &UpstreamError{Kind: ErrBadResponse, Status: http.StatusOK, Detail: "GraphQL error: " + sanitize(strings.TrimPrefix(err.Error(), "graphql: ")), Sent: true, Answered: true}
	default:
		return &UpstreamError{Kind: ErrUpstreamUnavailable, Detail: "connection failed: " + sanitize(err.Error()), Sent: true}
	}
}

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
		return nil, &UpstreamError{Kind: ErrBadResponse, Status: res.StatusCode, Detail: "answer is larger than 1 MiB", Sent: true}
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

func statusError(res *http.Response, body []byte) *UpstreamError {
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
		return &UpstreamError{Kind: ErrRateLimited, Status: status, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After")), Sent: true, Answered: true}
	case status >= 500:
		// A gateway's 502/504 can come back while inabit is still working on the call.
		return &UpstreamError{Kind: ErrUpstreamUnavailable, Status: status, Detail: bodyHint(body), Sent: true}
	case isGraphQL && authKind != nil:
		return &UpstreamError{Kind: authKind, Status: status, Detail: "GraphQL error: " + sanitize(authMsg), Sent: true, Answered: true}
	case status == http.StatusUnauthorized && !looksHTML(body):
		return &UpstreamError{Kind: ErrUnauthorized, Status: status, Detail: bodyHint(body), Sent: true, Answered: true}
	case (status == http.StatusUnauthorized || status == http.StatusForbidden) && isGraphQL:
		// inabit's own GraphQL answer refusing the call: it is over, and proves the token alive
		// enough to be authorised or not.
		return &UpstreamError{Kind: ErrRefused, Status: status, Detail: bodyHint(body), Sent: true, Answered: true}
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		// An HTML page or a bare 403 is what a WAF or proxy sends; it proves nothing about the token.
		return &UpstreamError{Kind: ErrRefused, Status: status, Detail: bodyHint(body), Sent: true}
	case status < 200 || status > 299:
		return &UpstreamError{Kind: ErrBadResponse, Status: status, Detail: bodyHint(body), Sent: true, Answered: isGraphQL}
	case !isGraphQL:
		return &UpstreamError{Kind: ErrBadResponse, Status: status, Detail: "answer is not GraphQL JSON" + hintSuffix(body), Sent: true}
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
			return "HTML page: " + sanitize(s[start:start+j])
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

func hintSuffix(body []byte) string {
	if h := bodyHint(body); h != "" {
		return " (" + h + ")"
	}
	return ""
}

func parseRetryAfter(v string) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		if d := time.Until(t); d > 0 {
			return d.Round(time.Second)
		}
	}
	return 0
}
