// Package mockctl runs the mock inabit (the mock-inabit binary built from the plugin module's
// internal/cmd/mock-inabit) as a process of its own and drives it over its HTTP control API
// (/admin/ on the same loopback listener; internal/mockinabit/admin.go lists the routes).
//
// The e2e module cannot import the plugin module's internal/mockinabit (it would have to require
// the plugin's module, raising Vault's pinned dependencies, and a symlink breaks module zips and
// Windows checkouts), so it talks to the mock the way a test talks to any server. Mock's methods
// carry the names of internal/mockinabit.Server's, so tests read the same either way. Everything
// that must happen while no client is listening (a delayed call applied after its client hung up,
// an answer held until ClearFaults) happens inside the mock process.
package mockctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Op names one of the two queries.
type Op string

const (
	OpAccessToken Op = "getApiUserAccessToken"
	OpRefresh     Op = "refreshApiUserLoginToken"
)

// FaultKind says how a call misbehaves; the values are the control API's wire names. The mock's
// FaultKind constants (internal/mockinabit/mockinabit.go) document each.
type FaultKind string

const (
	FaultStatus         FaultKind = "status"           // answers Status, Body, ContentType, RetryAfter; not applied
	FaultGraphQLError   FaultKind = "graphql-error"    // HTTP 200 with a GraphQL error (Code, Message); not applied
	FaultGarbage        FaultKind = "garbage"          // HTTP 200 with a body that is not JSON
	FaultOversize       FaultKind = "oversize"         // HTTP 200 with Size bytes of JSON-looking filler
	FaultDelay          FaultKind = "delay"            // waits Delay, then applies even if the client left
	FaultDropAfterApply FaultKind = "drop-after-apply" // applies, closes the connection unanswered
	FaultHoldAfterApply FaultKind = "hold-after-apply" // applies, answers after Delay or ClearFaults
	FaultHang           FaultKind = "hang"             // never applied; dropped after Delay or ClearFaults
	FaultPartial        FaultKind = "partial"          // applies; data plus an errors[] entry (Code, Message)

	FaultErrorsNotList          FaultKind = "errors-not-list"           // applies; "errors" is an object
	FaultErrorsMessageNotString FaultKind = "errors-message-not-string" // applies; errors[0].message is an object
	FaultBOM                    FaultKind = "bom"                       // applies; a UTF-8 BOM before the JSON
	FaultLeadingSpace           FaultKind = "leading-space"             // applies; whitespace before the JSON
	FaultTrailingNewline        FaultKind = "trailing-newline"          // applies; the token string ends in "\n"
	FaultGateway401             FaultKind = "gateway-401"               // bare 401 {"message":"Unauthorized"}; not applied
	FaultRetryAfterHuge         FaultKind = "retry-after-huge"          // 429, Retry-After 315360000 (or RetryAfter); not applied
)

// Fault is one injected misbehaviour. Times is how many calls it affects; 0 means every call
// until ClearFaults.
type Fault struct {
	Kind        FaultKind
	Status      int
	Body        string
	ContentType string
	RetryAfter  string
	Code        string
	Message     string
	Delay       time.Duration
	Size        int
	Times       int
}

func (f Fault) wire() map[string]any {
	w := map[string]any{"kind": string(f.Kind)}
	add := func(k string, v any, zero bool) {
		if !zero {
			w[k] = v
		}
	}
	add("status", f.Status, f.Status == 0)
	add("body", f.Body, f.Body == "")
	add("content_type", f.ContentType, f.ContentType == "")
	add("retry_after", f.RetryAfter, f.RetryAfter == "")
	add("code", f.Code, f.Code == "")
	add("message", f.Message, f.Message == "")
	add("delay", f.Delay.String(), f.Delay == 0)
	add("size", f.Size, f.Size == 0)
	add("times", f.Times, f.Times == 0)
	return w
}

// Options configure token lifetimes; zero values take inabit's: 30 days and 15 minutes.
type Options struct {
	LoginTokenTTL  time.Duration
	AccessTokenTTL time.Duration
}

// Mock is one running mock-inabit process. Its methods are safe for concurrent use. A failed
// control call (the process died, a route refused) goes to OnError, which panics when nil; the
// method then returns a zero value.
type Mock struct {
	// OnError receives control-API failures; e2e sets it to t.Errorf.
	OnError func(error)

	url    string
	dir    string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *lockedBuffer
	exited chan struct{}
	client *http.Client

	appliedOnce sync.Once
	applied     chan Op
	stop        chan struct{}
	closeOnce   sync.Once
}

// Start runs bin (mock-inabit) on a free loopback port and waits until it serves. The process
// exits when Close is called or when this process dies (its stdin closes).
func Start(bin string, opts Options) (*Mock, error) {
	if bin == "" {
		return nil, errors.New("no mock-inabit binary given (build it: go build -o bin/mock-inabit ./internal/cmd/mock-inabit)")
	}
	dir, err := os.MkdirTemp("", "mock-inabit-")
	if err != nil {
		return nil, err
	}
	urlFile := filepath.Join(dir, "url")
	args := []string{"-addr", "127.0.0.1:0", "-url-file", urlFile,
		"-login-token-file", filepath.Join(dir, "login-token"), "-exit-on-stdin-eof"}
	if opts.LoginTokenTTL > 0 {
		args = append(args, "-login-ttl", opts.LoginTokenTTL.String())
	}
	if opts.AccessTokenTTL > 0 {
		args = append(args, "-access-ttl", opts.AccessTokenTTL.String())
	}
	m := &Mock{
		dir:     dir,
		cmd:     exec.Command(bin, args...),
		out:     &lockedBuffer{},
		exited:  make(chan struct{}),
		client:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}},
		applied: make(chan Op, 64),
		stop:    make(chan struct{}),
	}
	m.cmd.Stdout, m.cmd.Stderr = m.out, m.out
	if m.stdin, err = m.cmd.StdinPipe(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if err := m.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() {
		_ = m.cmd.Wait()
		close(m.exited)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if raw, err := os.ReadFile(urlFile); err == nil && len(raw) > 0 {
			m.url = strings.TrimSpace(string(raw))
			return m, nil
		}
		select {
		case <-m.exited:
			m.Close()
			return nil, fmt.Errorf("mock-inabit exited before serving (%s): %s", m.cmd.ProcessState, m.out.String())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.Close()
			return nil, fmt.Errorf("mock-inabit wrote no -url-file within 20s: %s", m.out.String())
		}
	}
}

// Close stops the process (closing its stdin, then an interrupt, then a kill) and removes its
// files. It is safe to call more than once.
func (m *Mock) Close() {
	m.closeOnce.Do(func() {
		close(m.stop)
		_ = m.stdin.Close()
		select {
		case <-m.exited:
		case <-time.After(5 * time.Second):
			_ = m.cmd.Process.Signal(os.Interrupt)
			select {
			case <-m.exited:
			case <-time.After(5 * time.Second):
				_ = m.cmd.Process.Kill()
				<-m.exited
			}
		}
		m.client.CloseIdleConnections()
		os.RemoveAll(m.dir)
	})
}

// URL is the mock's base URL (http://127.0.0.1:PORT); GraphQL is served at any path but /admin/.
func (m *Mock) URL() string { return m.url }

// Log is everything the process wrote to stdout and stderr so far.
func (m *Mock) Log() string { return m.out.String() }

func (m *Mock) fail(err error) {
	select {
	case <-m.exited:
		err = fmt.Errorf("%w (the mock-inabit process has exited: %s; its output: %s)", err, m.cmd.ProcessState, m.out.String())
	default:
	}
	if m.OnError == nil {
		panic("mockctl: " + err.Error())
	}
	m.OnError(err)
}

// call sends one control request and decodes the JSON answer into out (when not nil).
func (m *Mock) call(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	if body != nil {
		raw, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequestWithContext(ctx, method, m.url+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := m.client.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, res.StatusCode, strings.TrimSpace(string(raw)))
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: %w: %s", method, path, err, raw)
		}
	}
	return nil
}

// do is call with a timeout, reporting failures to OnError; it says whether the call worked.
func (m *Mock) do(method, path string, body, out any, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := m.call(ctx, method, path, body, out); err != nil {
		m.fail(err)
		return false
	}
	return true
}

const callTimeout = 30 * time.Second

// maxAnswer bounds a control answer read: GET /admin/users lists every user, about 250 bytes each.
const maxAnswer = 16 << 20

type tokenAnswer struct {
	LoginToken string `json:"login_token"`
}

// LoginToken is the one login token inabit currently accepts ("" after RevokeLoginToken).
func (m *Mock) LoginToken() string {
	var a tokenAnswer
	m.do(http.MethodGet, "/admin/login-token", nil, &a, callTimeout)
	return a.LoginToken
}

// IssueLoginToken replaces the login token, as inabit support would; the old one dies.
func (m *Mock) IssueLoginToken() string {
	var a tokenAnswer
	m.do(http.MethodPost, "/admin/login-token", nil, &a, callTimeout)
	return a.LoginToken
}

// RevokeLoginToken kills the live login token without issuing another, as inabit support would
// on revoking it: every later call with it is answered GraphQL UNAUTHENTICATED.
func (m *Mock) RevokeLoginToken() {
	m.do(http.MethodPost, "/admin/revoke", nil, nil, callTimeout)
}

func (m *Mock) valid(kind, tok string) bool {
	var a struct {
		Valid bool `json:"valid"`
	}
	m.do(http.MethodPost, "/admin/valid/"+kind, map[string]string{"token": tok}, &a, callTimeout)
	return a.Valid
}

// LoginTokenValid says whether tok is the live, unexpired login token.
func (m *Mock) LoginTokenValid(tok string) bool { return m.valid("login", tok) }

// AccessTokenValid says whether tok is an unexpired access token this mock issued.
func (m *Mock) AccessTokenValid(tok string) bool { return m.valid("access", tok) }

type countsAnswer struct {
	Calls        map[Op]int `json:"calls"`
	Rejected     map[Op]int `json:"rejected"`
	Limited      map[Op]int `json:"limited"`
	InFlight     map[Op]int `json:"in_flight"`
	PeakInFlight map[Op]int `json:"peak_in_flight"`
	Users        int        `json:"users"`
}

func (m *Mock) counts() countsAnswer {
	var a countsAnswer
	m.do(http.MethodGet, "/admin/counts", nil, &a, callTimeout)
	return a
}

// Calls counts requests for op that reached the mock, faulty or not.
func (m *Mock) Calls(op Op) int { return m.counts().Calls[op] }

// Rejected counts calls for op that presented a dead or unknown login token.
func (m *Mock) Rejected(op Op) int { return m.counts().Rejected[op] }

// ResetCalls zeroes the counters: totals, every user's, refusals, peaks and the history.
func (m *Mock) ResetCalls() { m.do(http.MethodDelete, "/admin/counts", nil, nil, callTimeout) }

// Counts are the mock's counters at one moment, all from one control call.
type Counts struct {
	// Calls, Rejected (a dead token) and Limited (refused by the rate limit, 429) per op.
	Calls, Rejected, Limited map[Op]int
	// InFlight is how many calls per op are being handled now; PeakInFlight the most at once
	// since the start or ResetCalls.
	InFlight, PeakInFlight map[Op]int
	// Users is how many API users the mock has, the default one included.
	Users int
}

// Counts reads every counter at once.
func (m *Mock) Counts() Counts {
	a := m.counts()
	return Counts{Calls: a.Calls, Rejected: a.Rejected, Limited: a.Limited, InFlight: a.InFlight, PeakInFlight: a.PeakInFlight, Users: a.Users}
}

// Limited counts calls for op the rate limit refused (429).
func (m *Mock) Limited(op Op) int { return m.counts().Limited[op] }

// PeakInFlight is the most calls for op the mock handled at once since the start or ResetCalls.
func (m *Mock) PeakInFlight(op Op) int { return m.counts().PeakInFlight[op] }

// User is an API user as CreateUsers returns it: its id and its first login token.
type User struct {
	ID         string `json:"id"`
	LoginToken string `json:"login_token"`
}

// UserStats is one user's state and counters (internal/mockinabit's UserStats).
type UserStats struct {
	ID string `json:"id"`
	// Live: the user holds a live, unexpired login token.
	Live bool `json:"live"`
	// Calls carrying one of this user's tokens; Rejected: its token was dead; Limited: refused
	// by the rate limit.
	Calls    map[Op]int `json:"calls"`
	Rejected map[Op]int `json:"rejected"`
	Limited  map[Op]int `json:"limited"`
	// Refreshes applied: each minted the user a new token and killed the old one.
	Refreshes int `json:"refreshes"`
}

// createUsersBatch is how many users one control call creates (about 300 bytes each in the answer).
const createUsersBatch = 1000

// CreateUsers adds n API users to the mock, each with its own live login token; one user's
// refresh kills only that user's old token.
func (m *Mock) CreateUsers(n int) []User {
	var out []User
	for n > 0 {
		k := min(n, createUsersBatch)
		var a struct {
			Users []User `json:"users"`
		}
		if !m.do(http.MethodPost, fmt.Sprintf("/admin/users?n=%d", k), nil, &a, callTimeout) {
			return out
		}
		out = append(out, a.Users...)
		n -= k
	}
	return out
}

// Users lists every user's state and counters, the default user first, then in creation order.
func (m *Mock) Users() []UserStats {
	var a struct {
		Users []UserStats `json:"users"`
	}
	m.do(http.MethodGet, "/admin/users", nil, &a, callTimeout)
	return a.Users
}

// UserLoginToken is user id's live login token ("" once revoked or for an unknown user).
func (m *Mock) UserLoginToken(id string) string {
	var a tokenAnswer
	m.do(http.MethodGet, "/admin/users/"+url.PathEscape(id), nil, &a, callTimeout)
	return a.LoginToken
}

// SetRateLimit makes the mock answer 429 with Retry-After: 1, applying nothing, to every call
// beyond perSecond within one wall-clock second (all users together); 0 turns it off.
func (m *Mock) SetRateLimit(perSecond int) {
	m.do(http.MethodPost, fmt.Sprintf("/admin/rate-limit?per_second=%d", perSecond), nil, nil, callTimeout)
}

// History is the mock's per-second counts (Unix second to count) over the last three hours.
type History struct {
	// Calls that reached the mock per op, refused or not; Limited: those the rate limit refused.
	Calls, Limited map[Op]map[int64]int
	// RefreshesApplied: refreshes that minted a new token and killed the old one.
	RefreshesApplied map[int64]int
}

// History reads the per-second counts.
func (m *Mock) History() History {
	var a struct {
		Calls   map[Op]map[string]int `json:"calls_per_second"`
		Limited map[Op]map[string]int `json:"limited_per_second"`
		Applied map[string]int        `json:"refreshes_applied_per_second"`
	}
	m.do(http.MethodGet, "/admin/history", nil, &a, callTimeout)
	secs := func(w map[string]int) map[int64]int {
		out := make(map[int64]int, len(w))
		for sec, n := range w {
			if k, err := strconv.ParseInt(sec, 10, 64); err == nil {
				out[k] = n
			}
		}
		return out
	}
	h := History{Calls: map[Op]map[int64]int{}, Limited: map[Op]map[int64]int{}, RefreshesApplied: secs(a.Applied)}
	for _, op := range []Op{OpAccessToken, OpRefresh} {
		h.Calls[op], h.Limited[op] = secs(a.Calls[op]), secs(a.Limited[op])
	}
	return h
}

// CallsPerSecond counts the calls for op that reached the mock in each wall-clock second (Unix
// time) of the last three hours.
func (m *Mock) CallsPerSecond(op Op) map[int64]int { return m.History().Calls[op] }

// InjectFault queues f for op; queued faults apply in order.
func (m *Mock) InjectFault(op Op, f Fault) {
	m.do(http.MethodPost, "/admin/faults?op="+url.QueryEscape(string(op)), f.wire(), nil, callTimeout)
}

// ClearFaults removes every queued fault and releases held answers.
func (m *Mock) ClearFaults() { m.do(http.MethodDelete, "/admin/faults", nil, nil, callTimeout) }

// WaitIdle waits until no fault handler in the mock is still running and says whether that
// happened within timeout.
func (m *Mock) WaitIdle(timeout time.Duration) bool {
	var a struct {
		Idle bool `json:"idle"`
	}
	m.do(http.MethodPost, "/admin/wait-idle?timeout="+url.QueryEscape(timeout.String()), nil, &a, timeout+callTimeout)
	return a.Idle
}

// TTLs reports the lifetimes given to newly minted login and access tokens.
func (m *Mock) TTLs() (login, access time.Duration) {
	return m.ttl("")
}

// SetTTLs changes the lifetimes of tokens minted from now on; zero keeps a value.
func (m *Mock) SetTTLs(login, access time.Duration) {
	q := url.Values{}
	if login > 0 {
		q.Set("login", login.String())
	}
	if access > 0 {
		q.Set("access", access.String())
	}
	m.ttl(q.Encode())
}

// SetLoginTokenTTL changes the lifetime of login tokens minted from now on.
func (m *Mock) SetLoginTokenTTL(d time.Duration) { m.SetTTLs(d, 0) }

func (m *Mock) ttl(query string) (login, access time.Duration) {
	var a struct {
		Login  string `json:"login_ttl"`
		Access string `json:"access_ttl"`
	}
	method := http.MethodGet
	path := "/admin/ttl"
	if query != "" {
		method, path = http.MethodPost, path+"?"+query
	}
	if !m.do(method, path, nil, &a, callTimeout) {
		return 0, 0
	}
	login, _ = time.ParseDuration(a.Login)
	access, _ = time.ParseDuration(a.Access)
	return login, access
}

// Applied delivers the op of every call a fault handler in the mock applied (delay,
// drop-after-apply, hold-after-apply, partial and the odd-answer kinds), as the in-process
// mock's Applied does: the mock buffers the signals and a goroutine started by the first call
// long-polls GET /admin/applied into this channel (64 deep; signals beyond are dropped).
func (m *Mock) Applied() <-chan Op {
	m.appliedOnce.Do(func() { go m.pollApplied() })
	return m.applied
}

func (m *Mock) pollApplied() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-m.stop
		cancel()
	}()
	for ctx.Err() == nil {
		var a struct {
			Op Op `json:"op"`
		}
		if err := m.call(ctx, http.MethodGet, "/admin/applied?wait=10s", nil, &a); err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		if a.Op != "" {
			select {
			case m.applied <- a.Op:
			default:
			}
		}
	}
}

// lockedBuffer collects the process's output.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 1<<20 {
		return len(p), nil // enough to diagnose; a chatty mock must not grow without bound
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
