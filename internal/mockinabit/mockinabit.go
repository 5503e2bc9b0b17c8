// Package mockinabit is a stand-in for inabit's GraphQL API: a real GraphQL server with the two
// authentication queries, HS256 JWTs with iat/exp, one live login token at a time, call counters
// and fault injection. Unit tests run it in-process; internal/cmd/mock-inabit serves it on
// loopback for `make dev` and for the e2e suite, which drives each mock process over the HTTP
// control API of AdminHandler (admin.go). It lives in internal/ so that nothing outside this
// repository depends on it and the plugin binary links none of it.
package mockinabit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	graphql "github.com/graph-gophers/graphql-go"
	"github.com/graph-gophers/graphql-go/relay"
)

// Op names one of the two queries.
type Op string

const (
	OpAccessToken Op = "getApiUserAccessToken"
	OpRefresh     Op = "refreshApiUserLoginToken"
)

const schemaSDL = `
schema { query: Query }
type Query {
  getApiUserAccessToken: String!
  refreshApiUserLoginToken: String!
}
`

// FaultKind says how a call misbehaves.
type FaultKind int

const (
	// FaultStatus answers with Status, Body (and ContentType, RetryAfter) without applying the call.
	FaultStatus FaultKind = iota
	// FaultGraphQLError answers HTTP 200 with a GraphQL error (Code in extensions, Message).
	FaultGraphQLError
	// FaultGarbage answers HTTP 200 with a body that is not JSON.
	FaultGarbage
	// FaultOversize answers HTTP 200 with Size bytes of JSON-looking filler.
	FaultOversize
	// FaultDelay waits Delay and then handles the call even if the client has gone away, as a
	// real server keeps working after its client hangs up (a refresh is applied and the old token
	// dies); the answer is written only if the client is still there. Every application is
	// signalled on Applied.
	FaultDelay
	// FaultDropAfterApply applies the call (a refresh kills the old token) and closes the
	// connection without answering: the lost-answer case.
	FaultDropAfterApply
	// FaultHoldAfterApply applies the call, then waits Delay (or until ClearFaults) before answering.
	FaultHoldAfterApply
	// FaultHang holds the request until the client gives up, Delay passes (if set) or
	// ClearFaults, and then closes the connection without answering. The call is never applied:
	// a proxy that swallowed it.
	FaultHang
	// FaultPartial applies the call and answers HTTP 200 with both the real data and an errors[]
	// entry built from Message and Code (a GraphQL partial answer).
	FaultPartial
	// FaultErrorsNotList applies the call and answers HTTP 200 with the real data and an
	// "errors" member that is an object, not a list: {"message": Message, "extensions": {...}}.
	FaultErrorsNotList
	// FaultErrorsMessageNotString applies the call and answers HTTP 200 with the real data and an
	// errors[] entry whose "message" is an object ({"text": Message}), not a string.
	FaultErrorsMessageNotString
	// FaultBOM applies the call and answers with a UTF-8 byte order mark before the real JSON.
	FaultBOM
	// FaultLeadingSpace applies the call and answers with whitespace (" \r\n\t ") before the
	// real JSON.
	FaultLeadingSpace
	// FaultTrailingNewline applies the call and answers with the real token plus "\n" inside the
	// JSON string ("eyJ...\n"); the token inabit holds has no newline.
	FaultTrailingNewline
	// FaultGateway401 answers a gateway's bare HTTP 401 {"message":"Unauthorized"} (JSON, no
	// GraphQL envelope) without applying the call: the login token stays live.
	FaultGateway401
	// FaultRetryAfterHuge answers HTTP 429 with Retry-After: RetryAfter (315360000 seconds, ten
	// years, when empty) without applying the call.
	FaultRetryAfterHuge
)

// HugeRetryAfter is the Retry-After FaultRetryAfterHuge sends when Fault.RetryAfter is empty.
const HugeRetryAfter = "315360000"

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

	// released is the ClearFaults channel current when the fault was taken: a ClearFaults that
	// comes any time after the call arrived releases it, however late the handler waits.
	released <-chan struct{}
}

// Options configure token lifetimes; zero values take inabit's: 30 days and 15 minutes.
type Options struct {
	LoginTokenTTL  time.Duration
	AccessTokenTTL time.Duration
	// Now lets tests move the mock's clock together with the plugin's; nil means time.Now.
	Now func() time.Time
}

// Server is the mock. All methods are safe for concurrent use.
type Server struct {
	schema *graphql.Schema
	key    []byte
	now    func() time.Time

	mu             sync.Mutex
	loginTTL       time.Duration
	accessTTL      time.Duration
	current        string
	retired        map[string]bool
	calls          map[Op]int
	rejected       map[Op]int
	faults         map[Op][]*Fault
	release        chan struct{}
	appliedSignals chan Op
	// busy counts fault handlers still running; idle is closed whenever busy drops to zero.
	busy int
	idle chan struct{}
}

// New returns a mock holding one fresh login token.
func New(opts Options) *Server {
	if opts.LoginTokenTTL <= 0 {
		opts.LoginTokenTTL = 30 * 24 * time.Hour
	}
	if opts.AccessTokenTTL <= 0 {
		opts.AccessTokenTTL = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		panic(err)
	}
	s := &Server{
		key:            key,
		now:            opts.Now,
		loginTTL:       opts.LoginTokenTTL,
		accessTTL:      opts.AccessTokenTTL,
		retired:        map[string]bool{},
		calls:          map[Op]int{},
		rejected:       map[Op]int{},
		faults:         map[Op][]*Fault{},
		release:        make(chan struct{}),
		appliedSignals: make(chan Op, 64),
		idle:           make(chan struct{}),
	}
	close(s.idle)
	s.schema = graphql.MustParseSchema(schemaSDL, &resolver{s: s})
	s.current = s.mint("login", s.loginTTL)
	return s
}

// NewHTTPTest starts the mock on a loopback httptest server; the caller closes it.
func NewHTTPTest(opts Options) (*Server, *httptest.Server) {
	s := New(opts)
	return s, httptest.NewServer(s.Handler())
}

func (s *Server) mint(kind string, ttl time.Duration) string {
	now := s.now()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "api-user",
		"typ": kind,
		"iat": now.Unix(),
		"exp": now.Add(ttl).Unix(),
		"jti": hex.EncodeToString(jti),
	}).SignedString(s.key)
	if err != nil {
		panic(err)
	}
	return tok
}

func (s *Server) verify(tok, kind string) bool {
	claims := jwt.MapClaims{}
	parsed, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithExpirationRequired(), jwt.WithTimeFunc(s.now)).
		ParseWithClaims(tok, claims, func(*jwt.Token) (interface{}, error) { return s.key, nil })
	return err == nil && parsed.Valid && claims["typ"] == kind
}

// LoginToken is the one login token inabit currently accepts.
func (s *Server) LoginToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}

// IssueLoginToken replaces the login token, as inabit support would; the old one dies.
func (s *Server) IssueLoginToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != "" {
		s.retired[s.current] = true
	}
	s.current = s.mint("login", s.loginTTL)
	return s.current
}

// RevokeLoginToken kills the live login token without issuing another, as inabit support would
// on revoking it: every later call with it is answered GraphQL UNAUTHENTICATED (and counted as
// rejected), and LoginToken returns "" until IssueLoginToken.
func (s *Server) RevokeLoginToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current != "" {
		s.retired[s.current] = true
	}
	s.current = ""
}

// LoginTokenValid says whether tok is the live, unexpired login token.
func (s *Server) LoginTokenValid(tok string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return tok != "" && tok == s.current && s.verify(tok, "login")
}

// AccessTokenValid says whether tok is an unexpired access token this mock issued.
func (s *Server) AccessTokenValid(tok string) bool { return s.verify(tok, "access") }

// SetLoginTokenTTL changes the lifetime of login tokens minted from now on (by a refresh or
// IssueLoginToken); the live token keeps its exp.
func (s *Server) SetLoginTokenTTL(d time.Duration) { s.SetTTLs(d, 0) }

// TTLs reports the lifetimes given to newly minted login and access tokens.
func (s *Server) TTLs() (login, access time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loginTTL, s.accessTTL
}

// SetTTLs changes the lifetimes of tokens minted from now on; zero keeps a value.
func (s *Server) SetTTLs(login, access time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if login > 0 {
		s.loginTTL = login
	}
	if access > 0 {
		s.accessTTL = access
	}
}

// Calls counts requests for op that reached the mock, faulty or not.
func (s *Server) Calls(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op]
}

// Rejected counts calls for op that presented a dead or unknown login token. Two nodes rotating
// the same token would show up here.
func (s *Server) Rejected(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected[op]
}

// ResetCalls zeroes the counters.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[Op]int{}
	s.rejected = map[Op]int{}
}

// InjectFault queues f for op; queued faults apply in order.
func (s *Server) InjectFault(op Op, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cp := f
	s.faults[op] = append(s.faults[op], &cp)
}

// ClearFaults removes every queued fault and releases held answers.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = map[Op][]*Fault{}
	close(s.release)
	s.release = make(chan struct{})
}

// Applied delivers the op of every call a fault handler applied (FaultDelay, FaultDropAfterApply,
// FaultHoldAfterApply, FaultPartial and the odd-answer kinds that apply), so a test knows the upstream state changed before it
// crashes something. Sends never block: with nobody reading, signals beyond the buffer (64) are
// dropped.
func (s *Server) Applied() <-chan Op { return s.appliedSignals }

func (s *Server) signalApplied(op Op) {
	select {
	case s.appliedSignals <- op:
	default:
	}
}

// WaitIdle waits until no fault handler is still running (a delayed call has been applied or
// dropped, a held answer has been written) and says whether that happened within timeout.
func (s *Server) WaitIdle(timeout time.Duration) bool {
	s.mu.Lock()
	idle := s.idle
	s.mu.Unlock()
	select {
	case <-idle:
		return true
	default:
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-idle:
		return true
	case <-timer.C:
		return false
	}
}

// enterFaultLocked counts a fault handler as running; callers hold s.mu. takeFault calls it under
// the same lock that counts the call, so a test that saw Calls grow and then calls WaitIdle
// waits for that call's handler.
func (s *Server) enterFaultLocked() {
	if s.busy == 0 {
		s.idle = make(chan struct{})
	}
	s.busy++
}

func (s *Server) leaveFault() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.busy--
	if s.busy == 0 {
		close(s.idle)
	}
}

func (s *Server) takeFault(op Op) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	queue := s.faults[op]
	if len(queue) == 0 {
		return nil
	}
	f := queue[0]
	if f.Times > 0 {
		f.Times--
		if f.Times == 0 {
			s.faults[op] = queue[1:]
		}
	}
	cp := *f
	cp.released = s.release
	s.enterFaultLocked()
	return &cp
}

// Handler serves GraphQL at any path.
func (s *Server) Handler() http.Handler {
	gql := &relay.Handler{Schema: s.schema}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST a GraphQL query", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "cannot read body", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		op := opOf(body)
		ctx := context.WithValue(r.Context(), authKey{}, strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")))
		r = r.WithContext(ctx)

		f := s.takeFault(op)
		if f == nil {
			gql.ServeHTTP(w, r)
			return
		}
		s.serveFault(w, r, gql, f, op)
	})
}

func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, gql http.Handler, f *Fault, op Op) {
	defer s.leaveFault()
	switch f.Kind {
	case FaultStatus:
		if f.ContentType != "" {
			w.Header().Set("Content-Type", f.ContentType)
		}
		if f.RetryAfter != "" {
			w.Header().Set("Retry-After", f.RetryAfter)
		}
		w.WriteHeader(f.Status)
		_, _ = io.WriteString(w, f.Body)
	case FaultGraphQLError:
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]interface{}{
			"data":   nil,
			"errors": []interface{}{map[string]interface{}{"message": f.Message, "extensions": map[string]string{"code": f.Code}}},
		})
	case FaultGarbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "\x00\x01}{not json at all")
	case FaultOversize:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"data":{"x":"`)
		_, _ = w.Write(bytes.Repeat([]byte("a"), f.Size))
		_, _ = io.WriteString(w, `"}}`)
	case FaultDelay:
		timer := time.NewTimer(f.Delay)
		defer timer.Stop()
		<-timer.C
		// The client may have hung up meanwhile; a real server applies the call all the same.
		rec := s.apply(gql, r, op)
		if r.Context().Err() == nil {
			copyRecorded(w, rec)
		}
	case FaultHang:
		var after <-chan time.Time
		if f.Delay > 0 {
			timer := time.NewTimer(f.Delay)
			defer timer.Stop()
			after = timer.C
		}
		select {
		case <-r.Context().Done():
			return
		case <-after:
		case <-f.released:
		}
		dropConnection(w)
	case FaultPartial:
		rec := s.apply(gql, r, op)
		var out map[string]any
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out == nil {
			out = map[string]any{"data": nil}
		}
		errs, _ := out["errors"].([]any)
		out["errors"] = append(errs, map[string]any{"message": f.Message, "extensions": map[string]string{"code": f.Code}})
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		_ = json.NewEncoder(w).Encode(out)
	case FaultErrorsNotList, FaultErrorsMessageNotString, FaultBOM, FaultLeadingSpace, FaultTrailingNewline:
		rec := s.apply(gql, r, op)
		writeOdd(w, f, op, rec)
	case FaultGateway401:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, `{"message":"Unauthorized"}`)
	case FaultRetryAfterHuge:
		ra := f.RetryAfter
		if ra == "" {
			ra = HugeRetryAfter
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", ra)
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"message":"Too Many Requests"}`)
	case FaultDropAfterApply, FaultHoldAfterApply:
		rec := s.apply(gql, r, op)
		if f.Kind == FaultDropAfterApply {
			dropConnection(w)
			return
		}
		wait := f.Delay
		if wait <= 0 {
			wait = time.Hour
		}
		timer := time.NewTimer(wait)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-f.released:
		case <-r.Context().Done():
			return
		}
		copyRecorded(w, rec)
	default:
		http.Error(w, fmt.Sprintf("unknown fault %d", f.Kind), http.StatusInternalServerError)
	}
}

// apply runs the call to completion whether or not the client is still connected, and signals it.
func (s *Server) apply(gql http.Handler, r *http.Request, op Op) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	gql.ServeHTTP(rec, r.WithContext(context.WithoutCancel(r.Context())))
	s.signalApplied(op)
	return rec
}

// writeOdd answers an applied call's real result (rec) in one of the odd shapes: the data is
// there, the wrapping is not what a strict client expects.
func writeOdd(w http.ResponseWriter, f *Fault, op Op, rec *httptest.ResponseRecorder) {
	var out map[string]any
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out == nil {
		out = map[string]any{"data": nil}
	}
	prefix := ""
	switch f.Kind {
	case FaultErrorsNotList:
		out["errors"] = map[string]any{"message": f.Message, "extensions": map[string]string{"code": f.Code}}
	case FaultErrorsMessageNotString:
		out["errors"] = []any{map[string]any{"message": map[string]string{"text": f.Message}, "extensions": map[string]string{"code": f.Code}}}
	case FaultBOM:
		prefix = "\uFEFF"
	case FaultLeadingSpace:
		prefix = " \r\n\t "
	case FaultTrailingNewline:
		if data, ok := out["data"].(map[string]any); ok {
			if tok, ok := data[string(op)].(string); ok {
				data[string(op)] = tok + "\n"
			}
		}
	}
	body, err := json.Marshal(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, prefix)
	_, _ = w.Write(body)
}

func copyRecorded(w http.ResponseWriter, rec *httptest.ResponseRecorder) {
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// dropConnection closes the connection without an answer.
func dropConnection(w http.ResponseWriter) {
	if hj, ok := w.(http.Hijacker); ok {
		if conn, _, err := hj.Hijack(); err == nil {
			_ = conn.Close()
			return
		}
	}
	panic(http.ErrAbortHandler)
}

func opOf(body []byte) Op {
	var req struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(body, &req)
	switch {
	case strings.Contains(req.Query, string(OpRefresh)):
		return OpRefresh
	case strings.Contains(req.Query, string(OpAccessToken)):
		return OpAccessToken
	default:
		return Op("other")
	}
}

type authKey struct{}

type unauthenticated struct{}

func (unauthenticated) Error() string { return "Unauthorized: invalid or expired login token" }
func (unauthenticated) Extensions() map[string]any {
	return map[string]any{"code": "UNAUTHENTICATED"}
}

type resolver struct{ s *Server }

func (r *resolver) authorize(ctx context.Context) error {
	tok, _ := ctx.Value(authKey{}).(string)
	if tok == "" || !r.s.LoginTokenValid(tok) {
		r.s.mu.Lock()
		r.s.rejected[OpAccessToken]++
		r.s.mu.Unlock()
		return unauthenticated{}
	}
	return nil
}

func (r *resolver) GetApiUserAccessToken(ctx context.Context) (string, error) {
	if err := r.authorize(ctx); err != nil {
		return "", err
	}
	r.s.mu.Lock()
	ttl := r.s.accessTTL
	r.s.mu.Unlock()
	return r.s.mint("access", ttl), nil
}

func (r *resolver) RefreshApiUserLoginToken(ctx context.Context) (string, error) {
	tok, _ := ctx.Value(authKey{}).(string)
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	// Check and swap under one lock: two concurrent refreshes with the same token must not both win.
	if tok == "" || tok != r.s.current || !r.s.verify(tok, "login") {
		r.s.rejected[OpRefresh]++
		return "", unauthenticated{}
	}
	r.s.retired[r.s.current] = true
	r.s.current = r.s.mint("login", r.s.loginTTL)
	return r.s.current, nil
}
