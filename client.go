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
	ErrUnauthorized        = errors.New("inabit rejected the login token")
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
}

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
	gql *graphql.Client
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
	return &inabitClient{gql: graphql.NewClient(endpoint, graphql.WithHTTPClient(httpClient)), noRetryWait: noRetryWait}
}

// AccessToken asks for a short-lived access token. It is idempotent, so transient faults are
// retried a bounded number of times.
func (c *inabitClient) AccessToken(ctx context.Context, loginToken string) (string, error) {
	return backoff.Retry(ctx, func() (string, error) {
		tok, err := c.query(ctx, queryAccessToken, "getApiUserAccessToken", loginToken)
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
func (c *inabitClient) RefreshLoginToken(ctx context.Context, loginToken string) (string, error) {
	return c.query(ctx, queryRefreshLogin, "refreshApiUserLoginToken", loginToken)
}

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
	if err := c.gql.Run(ctx, req, &resp); err != nil {
		return "", classify(ctx, err)
	}
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
		// A GraphQL error that statusTransport did not recognise as an auth failure.
		return &UpstreamError{Kind: ErrBadResponse, Status: http.StatusOK, Detail: "GraphQL error: " + sanitize(strings.TrimPrefix(err.Error(), "graphql: ")), Sent: true}
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

type graphQLErrors struct {
	Errors []struct {
		Message    string `json:"message"`
		Extensions struct {
			Code string `json:"code"`
		} `json:"extensions"`
	} `json:"errors"`
}

func statusError(res *http.Response, body []byte) *UpstreamError {
	status := res.StatusCode
	switch {
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &UpstreamError{Kind: ErrUnauthorized, Status: status, Detail: bodyHint(body), Sent: true}
	case status == http.StatusTooManyRequests:
		return &UpstreamError{Kind: ErrRateLimited, Status: status, RetryAfter: parseRetryAfter(res.Header.Get("Retry-After")), Sent: true}
	case status >= 500:
		return &UpstreamError{Kind: ErrUpstreamUnavailable, Status: status, Detail: bodyHint(body), Sent: true}
	case status < 200 || status > 299:
		return &UpstreamError{Kind: ErrBadResponse, Status: status, Detail: bodyHint(body), Sent: true}
	}
	var ge graphQLErrors
	if err := json.Unmarshal(body, &ge); err != nil {
		return &UpstreamError{Kind: ErrBadResponse, Status: status, Detail: "answer is not GraphQL JSON" + hintSuffix(body), Sent: true}
	}
	for _, e := range ge.Errors {
		code := strings.ToUpper(e.Extensions.Code)
		msg := strings.ToLower(e.Message)
		if code == "UNAUTHENTICATED" || code == "FORBIDDEN" || strings.Contains(msg, "unauthorized") || strings.Contains(msg, "unauthenticated") {
			return &UpstreamError{Kind: ErrUnauthorized, Status: status, Detail: "GraphQL error: " + sanitize(e.Message), Sent: true}
		}
	}
	return nil
}

// bodyHint gives an operator a clue (an HTML title, a short JSON message) without echoing the
// body wholesale.
func bodyHint(body []byte) string {
	s := string(body)
	if i := strings.Index(strings.ToLower(s), "<title>"); i >= 0 {
		rest := s[i+len("<title>"):]
		if j := strings.Index(strings.ToLower(rest), "</title>"); j >= 0 {
			return "HTML page: " + sanitize(rest[:j])
		}
	}
	if strings.HasPrefix(strings.TrimSpace(s), "<") {
		return "HTML page"
	}
	return sanitize(s)
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
