package inabitapi

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"
)

// Typed errors. Callers match them with errors.Is; the concrete *Error carries the detail.
var (
	// ErrUnauthorized is inabit's own word that the login token is dead: a GraphQL answer (at
	// any status but 429 and 5xx) whose error has code UNAUTHENTICATED or a message saying
	// unauthenticated/unauthorized. Nothing else proves it: a 401 that is not a GraphQL answer is
	// ErrRefused.
	ErrUnauthorized = errors.New("inabit rejected the login token")
	// ErrRefused is a 401/403 that is not a GraphQL answer (a gateway, WAF or proxy; Answered is
	// false), a GraphQL answer at 401/403 without an auth code, or a GraphQL FORBIDDEN (a role
	// without the right). It says nothing about whether the login token still works.
	ErrRefused     = errors.New("inabit, or a proxy in front of it, refused the request")
	ErrRateLimited = errors.New("inabit rate-limited the request")
	ErrUnavailable = errors.New("inabit is unavailable")
	ErrBadResponse = errors.New("inabit returned a response that is not a valid answer")
)

// Error is what every failed inabit call returns. Its message never carries a token.
type Error struct {
	Kind       error         // one of the Err* sentinels above
	Status     int           // HTTP status, 0 when no response arrived
	RetryAfter time.Duration // from a 429's Retry-After header
	// Detail says what went wrong and what kind of answer came back, never what the answer said:
	// Error() reaches whoever wrote config, who may have pointed url at an internal service.
	Detail string
	// Said is a sanitised, redacted clue from the answer itself (an HTML title, a GraphQL
	// message) for the operator's log only. Error() never includes it.
	Said string
	// Sent is true when the request may have reached inabit, so a non-idempotent call may
	// have been applied even though we got no answer.
	Sent bool
	// Answered is true when inabit itself answered (a GraphQL answer at any status but 5xx, or a
	// 429): the call is over and was not applied. Without it, a sent refresh may still be applied
	// later.
	Answered bool
}

// MayStillApply says whether a refresh that failed this way may have been applied, or may yet be
// applied, by inabit: the request left this host and no answer of inabit's own came back. A
// timeout, a dropped connection, a 5xx or a proxy's page all leave inabit free to finish the call.
func (e *Error) MayStillApply() bool { return e.Sent && !e.Answered }

func (e *Error) Error() string {
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

func (e *Error) Unwrap() error { return e.Kind }

// classify turns whatever machinebox or net/http returned into an *Error. Its Detail is fixed
// wording chosen by the kind of failure, never Go's error text: that text quotes what the other
// end sent (net/http's "malformed HTTP response \"<first line>\"", a certificate's names, a
// resolver's address), and a caller who pointed url at an internal service would read it. The
// text itself goes to Said, for the operator's log.
func classify(ctx context.Context, err error) error {
	var ue *Error
	if errors.As(err, &ue) {
		return ue
	}
	said := sanitize(err.Error())
	var netErr net.Error
	var opErr *net.OpError
	switch {
	case errors.As(err, &opErr) && opErr.Op == "dial":
		// Nothing left this host: safe to say the request was not applied.
		return &Error{Kind: ErrUnavailable, Detail: "cannot connect: " + dialFailure(opErr.Err), Said: said}
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &netErr) && netErr.Timeout()):
		return &Error{Kind: ErrUnavailable, Detail: "timed out waiting for an answer", Said: said, Sent: true}
	case errors.Is(err, context.Canceled) || ctx.Err() != nil:
		return &Error{Kind: ErrUnavailable, Detail: "request cancelled", Said: said, Sent: true}
	case strings.HasPrefix(err.Error(), "decoding response"):
		return &Error{Kind: ErrBadResponse, Status: http.StatusOK, Detail: "answer is not GraphQL JSON", Said: said, Sent: true}
	case strings.HasPrefix(err.Error(), "graphql: "):
		// A GraphQL error that statusTransport did not recognise as an auth failure: inabit
		// answered, so the call is over. Its message is errorsSummary's (canonicalBody), which
		// never quotes the answer.
		return &Error{Kind: ErrBadResponse, Status: http.StatusOK, Detail: sanitize(strings.TrimPrefix(err.Error(), "graphql: ")), Sent: true, Answered: true}
	case isTLSFailure(err):
		// A certificate this host refuses stops the handshake before any request is written;
		// anything else (an alert, a non-TLS record) may come after the request went out.
		return &Error{Kind: ErrUnavailable, Detail: "TLS failed: " + tlsFailure(err), Said: said, Sent: !isCertificateFailure(err)}
	default:
		return &Error{Kind: ErrUnavailable, Detail: "connection failed: " + connectionFailure(err), Said: said, Sent: true}
	}
}

// dialFailure says why a connection could not be made, in fixed words.
func dialFailure(err error) string {
	var dnsErr *net.DNSError
	switch {
	case errors.Is(err, errLinkLocal), errors.Is(err, errNotLoopback):
		return err.Error() // the plugin's own words
	case errors.As(err, &dnsErr):
		return "the url's host name could not be resolved"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return "no route to the host"
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return "timed out"
	}
	return "the connection could not be made"
}

func isTLSFailure(err error) bool {
	var recErr tls.RecordHeaderError
	var alert tls.AlertError
	return isCertificateFailure(err) || errors.As(err, &recErr) || errors.As(err, &alert)
}

// isCertificateFailure: this host refused the server's certificate, in the handshake.
func isCertificateFailure(err error) bool {
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var certErr x509.CertificateInvalidError
	var verifyErr *tls.CertificateVerificationError
	return errors.As(err, &hostErr) || errors.As(err, &authErr) || errors.As(err, &certErr) || errors.As(err, &verifyErr)
}

// tlsFailure names what went wrong in a TLS handshake, never the certificate's contents.
func tlsFailure(err error) string {
	var hostErr x509.HostnameError
	var authErr x509.UnknownAuthorityError
	var certErr x509.CertificateInvalidError
	var recErr tls.RecordHeaderError
	switch {
	case errors.As(err, &hostErr):
		return "the server's certificate is not valid for the url's host"
	case errors.As(err, &authErr):
		return "the server's certificate is signed by an authority this host does not trust"
	case errors.As(err, &certErr):
		return "the server's certificate is invalid or expired"
	case errors.As(err, &recErr):
		return "the server does not speak TLS (an http:// service behind an https:// url?)"
	}
	return "the server sent a TLS alert"
}

// connectionFailure says how an exchange broke off, in fixed words.
func connectionFailure(err error) string {
	switch msg := err.Error(); {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "the connection was closed before an answer came"
	case strings.Contains(msg, "malformed HTTP"), strings.Contains(msg, "malformed MIME"),
		strings.Contains(msg, "bad Content-Length"), strings.Contains(msg, "transfer encoding"),
		strings.Contains(msg, "server gave HTTP response"):
		return "the answer is not HTTP"
	}
	return "the exchange broke off"
}
