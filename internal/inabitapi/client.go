// Package inabitapi is the only code that talks to inabit: a GraphQL client for the two calls the
// plugin makes, the typed errors its answers turn into, and the redaction applied to any text that
// might hold a token.
package inabitapi

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/machinebox/graphql"
)

const (
	// DefaultURL is inabit's GraphQL endpoint.
	DefaultURL = "https://api.inabit.com/graphql"

	// MaxAttempts bounds retries of idempotent calls so that a dead upstream costs a reader
	// seconds, not minutes.
	MaxAttempts = 3

	queryAccessToken  = "query { getApiUserAccessToken }"
	queryRefreshLogin = "query { refreshApiUserLoginToken }"

	fieldAccessToken  = "getApiUserAccessToken"
	fieldRefreshLogin = "refreshApiUserLoginToken"

	// maxResponseBytes bounds what a misbehaving upstream can make us buffer; a real answer is a
	// few hundred bytes.
	maxResponseBytes = 1 << 20

	// maxRetryAfterWait is the longest Retry-After we honour inside one request; a longer one is
	// reported to the caller instead of holding a Vault request open.
	maxRetryAfterWait = 5 * time.Second
)

// Client talks GraphQL to one inabit endpoint.
type Client struct {
	gql           *graphql.Client
	http          *http.Client
	noRetryWait   bool
	onRateLimited func(retryAfter time.Duration)
	// shared is the key of the process-wide network transport the client uses (shared.go); nil
	// when it was given its own (WithTransport). released: CloseIdle has given it up.
	shared   *transportKey
	released atomic.Bool
}

// Option configures a Client.
type Option func(*options)

type options struct {
	transport     http.RoundTripper
	noRetryWait   bool
	onRateLimited func(retryAfter time.Duration)
}

// WithTransport puts rt, instead of the network, under the client's status handling (tests use an
// in-process inabit).
func WithTransport(rt http.RoundTripper) Option { return func(o *options) { o.transport = rt } }

// WithoutRetryWait makes retries of idempotent calls immediate, so a virtual clock is never
// outrun by real sleeps.
func WithoutRetryWait() Option { return func(o *options) { o.noRetryWait = true } }

// WithRateLimitNotice calls f with the Retry-After (0 when absent) of every 429 inabit answers,
// including those a retry then got past: one Vault is one client to inabit, and its other calls
// should slow down too.
func WithRateLimitNotice(f func(retryAfter time.Duration)) Option {
	return func(o *options) { o.onRateLimited = f }
}

// New returns a client for endpoint whose every HTTP exchange is bounded by timeout.
func New(endpoint string, timeout time.Duration, opts ...Option) *Client {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	base := o.transport
	var key *transportKey
	if base == nil {
		key = &transportKey{timeout: timeout, loopbackOnly: strings.HasPrefix(strings.ToLower(endpoint), "http:")}
		base = acquireTransport(*key)
	}
	httpClient := &http.Client{
		Timeout:   timeout,
		Transport: &statusTransport{base: base},
		// A redirect would resend the bearer token to wherever upstream points; refuse it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// machinebox's Log hook prints headers and bodies, which hold tokens: it keeps its no-op
	// default and is never assigned.
	return &Client{gql: graphql.NewClient(endpoint, graphql.WithHTTPClient(httpClient)), http: httpClient, noRetryWait: o.noRetryWait, onRateLimited: o.onRateLimited, shared: key}
}

// networkTransport is the transport to inabit. It speaks HTTP/1.1 only: Vault's environment may
// carry GODEBUG=http2debug=2, which makes Go's HTTP/2 client print every header, the bearer login
// token included, to stderr, which Vault logs; a handful of calls an hour gain nothing from HTTP/2.
// HTTPS_PROXY and NO_PROXY from Vault's environment apply.
//
// Every address dialled passes dialControl: never link-local or metadata, and only loopback for
// an http:// endpoint (loopbackOnly).
func networkTransport(timeout time.Duration, loopbackOnly bool) *http.Transport {
	var http1 http.Protocols
	http1.SetHTTP1(true)
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second, Control: dialControl(loopbackOnly)}).DialContext,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       90 * time.Second,
		Protocols:             &http1,
	}
}

// CloseIdle releases a client the caller no longer uses. A client on the shared network transport
// gives it up, and the last one to do so closes its idle connections; a client given its own
// transport closes that one's. Calls still in flight finish either way. Calling it again does
// nothing more.
func (c *Client) CloseIdle() {
	switch {
	case c == nil:
	case c.shared == nil:
		c.http.CloseIdleConnections()
	case c.released.CompareAndSwap(false, true):
		releaseTransport(*c.shared)
	}
}

// transport is the shared network transport c uses; nil when it was given its own.
func (c *Client) transport() *http.Transport {
	if c.shared == nil {
		return nil
	}
	return c.http.Transport.(*statusTransport).base.(*http.Transport)
}

// AccessToken asks for a short-lived access token. It is idempotent, so transient faults are
// retried up to MaxAttempts times.
func (c *Client) AccessToken(ctx context.Context, loginToken string) (string, error) {
	return backoff.Retry(ctx, func() (string, error) {
		tok, err := c.query(ctx, queryAccessToken, fieldAccessToken, loginToken)
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
		backoff.WithMaxTries(MaxAttempts))
}

func (c *Client) retryBackOff() backoff.BackOff {
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
func (c *Client) RefreshLoginToken(ctx context.Context, loginToken string) (newToken, answerErrors string, err error) {
	tok, err := c.query(ctx, queryRefreshLogin, fieldRefreshLogin, loginToken)
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
	var ue *Error
	if !errors.As(err, &ue) {
		return backoff.Permanent(err)
	}
	switch {
	case errors.Is(ue, ErrUnavailable):
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

func (c *Client) query(ctx context.Context, q, field, loginToken string) (string, error) {
	req := graphql.NewRequest(q)
	req.Header.Set("Authorization", "Bearer "+loginToken)
	var resp map[string]json.RawMessage
	// statusTransport reads the answer and hands machinebox a canonical one: the token alone when
	// the answer carries it, with every error's text joined in one error. machinebox decodes data
	// before it reports that error, so a partial answer's token is in resp even when runErr is set.
	note := &answerNote{}
	runErr := c.gql.Run(context.WithValue(context.WithValue(ctx, fieldKey{}, field), noteKey{}, note), req, &resp)
	tok, tokErr := tokenField(resp, field)
	if runErr != nil {
		if tokErr == nil && strings.HasPrefix(runErr.Error(), "graphql: ") {
			return "", &partialAnswer{token: tok, errors: note.errors}
		}
		err := classify(ctx, runErr)
		if ue, ok := err.(*Error); ok {
			if ue.Said == "" {
				ue.Said = note.errors
			}
			if errors.Is(ue, ErrRateLimited) && c.onRateLimited != nil {
				c.onRateLimited(ue.RetryAfter)
			}
		}
		return "", err
	}
	return tok, tokErr
}

func tokenField(resp map[string]json.RawMessage, field string) (string, error) {
	raw, ok := resp[field]
	if !ok || len(raw) == 0 || string(raw) == "null" {
		return "", &Error{Kind: ErrBadResponse, Status: http.StatusOK, Detail: "no " + field + " in the answer", Sent: true}
	}
	var tok string
	if err := json.Unmarshal(raw, &tok); err != nil || strings.TrimSpace(tok) == "" {
		return "", &Error{Kind: ErrBadResponse, Status: http.StatusOK, Detail: field + " is not a non-empty string", Sent: true}
	}
	return strings.TrimSpace(tok), nil
}
