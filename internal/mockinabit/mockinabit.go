// Package mockinabit is a stand-in for inabit's GraphQL API: a real GraphQL server with the two
// authentication queries, HS256 JWTs with iat/exp, API users each with one live login token at a
// time, call counters (in total and per user), fault injection and an optional rate limit. Unit tests run it in-process; internal/cmd/mock-inabit serves it on
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

// DefaultUserID is the API user every mock starts with. LoginToken, IssueLoginToken and
// RevokeLoginToken act on it; CreateUsers adds others, each with its own login token.
const DefaultUserID = "api-user"

// MaxUsersPerCall bounds one CreateUsers through the control API.
const MaxUsersPerCall = 10_000

// maxHistorySeconds bounds the per-second call history: the last three hours are kept.
const maxHistorySeconds = 3 * 3600

// user is one API user: its live login token ("" once revoked) and its own counters. A token
// names its user in the sub claim, so a call is counted against the user whose token it carries,
// live or dead.
type user struct {
	id                       string
	current                  string
	calls, rejected, limited map[Op]int
	refreshes                int
}

func newUser(id string) *user {
	return &user{id: id, calls: map[Op]int{}, rejected: map[Op]int{}, limited: map[Op]int{}}
}

// Server is the mock. All methods are safe for concurrent use.
type Server struct {
	schema *graphql.Schema
	key    []byte
	now    func() time.Time

	mu        sync.Mutex
	loginTTL  time.Duration
	accessTTL time.Duration
	// def is the default user (DefaultUserID); users holds every user by id, order in creation order.
	def      *user
	users    map[string]*user
	order    []*user
	retired  map[string]bool
	calls    map[Op]int
	rejected map[Op]int
	limited  map[Op]int
	// perSecond is the rate limit (0: none): calls beyond it within one wall-clock second are
	// answered 429; window is that second, windowCalls the calls admitted in it.
	perSecond      int
	window         int64
	windowCalls    int
	inFlight       map[Op]int
	peak           map[Op]int
	history        map[series]map[int64]int
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
		users:          map[string]*user{},
		retired:        map[string]bool{},
		calls:          map[Op]int{},
		rejected:       map[Op]int{},
		limited:        map[Op]int{},
		inFlight:       map[Op]int{},
		peak:           map[Op]int{},
		history:        map[series]map[int64]int{},
		faults:         map[Op][]*Fault{},
		release:        make(chan struct{}),
		appliedSignals: make(chan Op, 64),
		idle:           make(chan struct{}),
	}
	close(s.idle)
	s.schema = graphql.MustParseSchema(schemaSDL, &resolver{s: s})
	s.def = s.addUserLocked(DefaultUserID)
	return s
}

// addUserLocked creates user id with a fresh login token; callers hold s.mu (or own s alone).
func (s *Server) addUserLocked(id string) *user {
	u := newUser(id)
	u.current = s.mint(id, "login", s.loginTTL)
	s.users[id] = u
	s.order = append(s.order, u)
	return u
}

// NewHTTPTest starts the mock on a loopback httptest server; the caller closes it.
func NewHTTPTest(opts Options) (*Server, *httptest.Server) {
	s := New(opts)
	return s, httptest.NewServer(s.Handler())
}

func (s *Server) mint(sub, kind string, ttl time.Duration) string {
	now := s.now()
	jti := make([]byte, 12)
	_, _ = rand.Read(jti)
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": sub,
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

// userOf is the id of the user tok names (its sub claim), for any token this mock signed, live,
// dead or expired; "" for anything else.
func (s *Server) userOf(tok string) string {
	if tok == "" {
		return ""
	}
	claims := jwt.MapClaims{}
	_, err := jwt.NewParser(jwt.WithValidMethods([]string{"HS256"}), jwt.WithoutClaimsValidation()).
		ParseWithClaims(tok, claims, func(*jwt.Token) (interface{}, error) { return s.key, nil })
	if err != nil {
		return ""
	}
	sub, _ := claims["sub"].(string)
	return sub
}

// LoginToken is the one login token inabit currently accepts for the default user.
func (s *Server) LoginToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.def.current
}

// IssueLoginToken replaces the default user's login token, as inabit support would; the old one
// dies. Other users' tokens are untouched.
func (s *Server) IssueLoginToken() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.def.current != "" {
		s.retired[s.def.current] = true
	}
	s.def.current = s.mint(s.def.id, "login", s.loginTTL)
	return s.def.current
}

// RevokeLoginToken kills the default user's live login token without issuing another, as inabit
// support would on revoking it: every later call with it is answered GraphQL UNAUTHENTICATED (and
// counted as rejected), and LoginToken returns "" until IssueLoginToken.
func (s *Server) RevokeLoginToken() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.def.current != "" {
		s.retired[s.def.current] = true
	}
	s.def.current = ""
}

// LoginTokenValid says whether tok is the live, unexpired login token of the user it names.
func (s *Server) LoginTokenValid(tok string) bool {
	id := s.userOf(tok)
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveLocked(s.users[id], tok)
}

func (s *Server) liveLocked(u *user, tok string) bool {
	return u != nil && tok != "" && tok == u.current && s.verify(tok, "login")
}

// User is an API user as CreateUsers returns it: its id and its first login token.
type User struct {
	ID         string `json:"id"`
	LoginToken string `json:"login_token"`
}

// CreateUsers adds n API users, each with its own live login token, and returns them in order.
// Ids are "user-0001", "user-0002", … across calls.
func (s *Server) CreateUsers(n int) []User {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]User, 0, max(n, 0))
	for i := 0; i < n; i++ {
		u := s.addUserLocked(fmt.Sprintf("user-%04d", len(s.order)))
		out = append(out, User{ID: u.id, LoginToken: u.current})
	}
	return out
}

// UserLoginToken is user id's live login token ("" once revoked); ok false for an unknown user.
func (s *Server) UserLoginToken(id string) (tok string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[id]
	if u == nil {
		return "", false
	}
	return u.current, true
}

// UserStats is one user's state and counters.
type UserStats struct {
	ID string `json:"id"`
	// Live: the user holds a live, unexpired login token.
	Live bool `json:"live"`
	// Calls counts the calls that carried one of this user's tokens, live or dead; Rejected those
	// whose token was dead; Limited those the rate limit refused.
	Calls    map[Op]int `json:"calls"`
	Rejected map[Op]int `json:"rejected"`
	Limited  map[Op]int `json:"limited"`
	// Refreshes counts the refreshes applied: each minted this user a new token and killed the old.
	Refreshes int `json:"refreshes"`
}

func (s *Server) statsLocked(u *user) UserStats {
	return UserStats{ID: u.id, Live: s.liveLocked(u, u.current), Calls: copyOps(u.calls), Rejected: copyOps(u.rejected),
		Limited: copyOps(u.limited), Refreshes: u.refreshes}
}

// Users lists every user, the default one first, then in creation order.
func (s *Server) Users() []UserStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]UserStats, 0, len(s.order))
	for _, u := range s.order {
		out = append(out, s.statsLocked(u))
	}
	return out
}

// UserStatsOf is one user's state and counters; ok false for an unknown user.
func (s *Server) UserStatsOf(id string) (st UserStats, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[id]
	if u == nil {
		return UserStats{}, false
	}
	return s.statsLocked(u), true
}

func copyOps(m map[Op]int) map[Op]int {
	out := make(map[Op]int, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// SetRateLimit makes the mock answer HTTP 429 with Retry-After: 1, applying nothing, to every
// call beyond perSecond within one wall-clock second (all users and both queries together: one
// Vault is one client to inabit). 0 turns it off.
func (s *Server) SetRateLimit(perSecond int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.perSecond = max(perSecond, 0)
	s.window, s.windowCalls = 0, 0
}

// RateLimit is the calls per second beyond which the mock answers 429; 0 when off.
func (s *Server) RateLimit() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.perSecond
}

// Limited counts calls for op the rate limit refused (429).
func (s *Server) Limited(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.limited[op]
}

// InFlight is how many calls for op are being handled right now.
func (s *Server) InFlight(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight[op]
}

// PeakInFlight is the most calls for op handled at once since the start or ResetCalls.
func (s *Server) PeakInFlight(op Op) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[op]
}

// series names one per-second history: what was counted, for which op.
type series struct {
	kind string // "calls", "limited" or "applied"
	op   Op
}

// CallsPerSecond counts the calls for op that reached the mock in each wall-clock second (Unix
// time) of the last three hours, refused or not.
func (s *Server) CallsPerSecond(op Op) map[int64]int { return s.historyOf("calls", op) }

// LimitedPerSecond counts the calls for op the rate limit refused, per second as CallsPerSecond.
func (s *Server) LimitedPerSecond(op Op) map[int64]int { return s.historyOf("limited", op) }

// RefreshesAppliedPerSecond counts the refreshes applied (a new token minted, the old one
// killed), per second as CallsPerSecond.
func (s *Server) RefreshesAppliedPerSecond() map[int64]int { return s.historyOf("applied", OpRefresh) }

func (s *Server) historyOf(kind string, op Op) map[int64]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.history[series{kind, op}]
	out := make(map[int64]int, len(h))
	for k, v := range h {
		out[k] = v
	}
	return out
}

func (s *Server) enterCall(op Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight[op]++
	s.peak[op] = max(s.peak[op], s.inFlight[op])
}

func (s *Server) leaveCall(op Op) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inFlight[op]--
}

// recordSecondLocked counts one kind/op event in second sec's history; callers hold s.mu.
func (s *Server) recordSecondLocked(kind string, op Op, sec int64) {
	key := series{kind, op}
	h := s.history[key]
	if h == nil {
		h = map[int64]int{}
		s.history[key] = h
	}
	if _, seen := h[sec]; !seen && len(h) >= maxHistorySeconds {
		for k := range h {
			if k <= sec-maxHistorySeconds {
				delete(h, k)
			}
		}
	}
	h[sec]++
}

// limitedLocked says whether the rate limit refuses a call arriving in second sec, and admits it
// otherwise; callers hold s.mu.
func (s *Server) limitedLocked(sec int64) bool {
	if s.perSecond <= 0 {
		return false
	}
	if sec != s.window {
		s.window, s.windowCalls = sec, 0
	}
	if s.windowCalls >= s.perSecond {
		return true
	}
	s.windowCalls++
	return false
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

// ResetCalls zeroes the counters: totals, every user's, the rate limit's refusals, the peaks in
// flight and the per-second history.
func (s *Server) ResetCalls() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = map[Op]int{}
	s.rejected = map[Op]int{}
	s.limited = map[Op]int{}
	s.peak = map[Op]int{}
	s.history = map[series]map[int64]int{}
	for _, u := range s.order {
		u.calls, u.rejected, u.limited, u.refreshes = map[Op]int{}, map[Op]int{}, map[Op]int{}, 0
	}
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

// rateLimited is the answer to a call beyond the rate limit: nothing is applied.
var rateLimited = Fault{Kind: FaultStatus, Status: http.StatusTooManyRequests, RetryAfter: "1",
	ContentType: "application/json", Body: `{"message":"Too Many Requests"}`}

// takeFault counts a call for op from user uid ("" when its token is no user's) and returns the
// fault it meets: the rate limit's 429 first, then the queued faults; nil for a normal answer.
func (s *Server) takeFault(op Op, uid string) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls[op]++
	u := s.users[uid]
	if u != nil {
		u.calls[op]++
	}
	sec := s.now().Unix()
	s.recordSecondLocked("calls", op, sec)
	if s.limitedLocked(sec) {
		s.recordSecondLocked("limited", op, sec)
		s.limited[op]++
		if u != nil {
			u.limited[op]++
		}
		cp := rateLimited
		s.enterFaultLocked()
		return &cp
	}
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
		tok := strings.TrimSpace(strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
		c := caller{token: tok, user: s.userOf(tok)}
		r = r.WithContext(context.WithValue(r.Context(), authKey{}, c))
		s.enterCall(op)
		defer s.leaveCall(op)

		f := s.takeFault(op, c.user)
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

// caller is who a call came from: the bearer token and the user it names ("" for none).
type caller struct{ token, user string }

func callerOf(ctx context.Context) caller {
	c, _ := ctx.Value(authKey{}).(caller)
	return c
}

type unauthenticated struct{}

func (unauthenticated) Error() string { return "Unauthorized: invalid or expired login token" }
func (unauthenticated) Extensions() map[string]any {
	return map[string]any{"code": "UNAUTHENTICATED"}
}

type resolver struct{ s *Server }

// rejectLocked counts a call for op whose token was dead, in total and against its user.
func (s *Server) rejectLocked(op Op, c caller) {
	s.rejected[op]++
	if u := s.users[c.user]; u != nil {
		u.rejected[op]++
	}
}

func (r *resolver) GetApiUserAccessToken(ctx context.Context) (string, error) {
	c := callerOf(ctx)
	r.s.mu.Lock()
	if !r.s.liveLocked(r.s.users[c.user], c.token) {
		r.s.rejectLocked(OpAccessToken, c)
		r.s.mu.Unlock()
		return "", unauthenticated{}
	}
	ttl := r.s.accessTTL
	r.s.mu.Unlock()
	return r.s.mint(c.user, "access", ttl), nil
}

func (r *resolver) RefreshApiUserLoginToken(ctx context.Context) (string, error) {
	c := callerOf(ctx)
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	// Check and swap under one lock: two concurrent refreshes with the same token must not both
	// win. Only the caller's own user changes: every other user's token stays live.
	u := r.s.users[c.user]
	if !r.s.liveLocked(u, c.token) {
		r.s.rejectLocked(OpRefresh, c)
		return "", unauthenticated{}
	}
	r.s.retired[u.current] = true
	u.current = r.s.mint(u.id, "login", r.s.loginTTL)
	u.refreshes++
	r.s.recordSecondLocked("applied", OpRefresh, r.s.now().Unix())
	return u.current, nil
}
