package inabit

// The simulation's inabit: an http.RoundTripper under the plugin's client that answers the two
// GraphQL queries as inabit does, with faults chosen by the seed, and that knows the truth the
// invariants need (which login token is live, who was told what).

import (
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

type simFault string

const (
	fNone      simFault = ""
	fDial      simFault = "dial-refused"  // nothing sent
	fTimeout   simFault = "timeout"       // sent; the client gave up after request_timeout
	fDrop      simFault = "dropped"       // sent; the answer was cut (io.ErrUnexpectedEOF)
	f5xx       simFault = "5xx"           // sent; a gateway error
	fGarbage   simFault = "garbage"       // sent; a body that is not GraphQL JSON
	fPartial   simFault = "partial"       // a normal answer that also carries errors[]
	fHTML401   simFault = "html-401"      // a proxy's login page; inabit never saw the call
	fHTML403   simFault = "html-403"      // a WAF page; inabit never saw the call
	fGQLError  simFault = "graphql-error" // inabit's own errors-only answer; nothing applied
	fForbidden simFault = "forbidden"     // inabit's FORBIDDEN for a role that may not refresh
	f429       simFault = "429"           // rate limited; nothing applied

	// Answer shapes inabit or a gateway may send. The first four carry the token: for a refresh,
	// inabit applied it. The last two carry none, and nothing was applied.
	fErrorsObject    simFault = "errors-object"        // the token, with "errors" an object instead of a list
	fErrorsNonString simFault = "errors-non-string"    // the token, with an error whose message is not a string
	fBOM             simFault = "bom"                  // the token, after a UTF-8 byte-order mark
	fTrailingNewline simFault = "token-newline"        // the token with a trailing newline inside the JSON string
	fGateway401      simFault = "gateway-401"          // a gateway's bare 401 {"message":"Unauthorized"}; inabit never saw it
	f429Huge         simFault = "429-huge-retry-after" // rate limited, Retry-After of years; nothing applied
)

var simFaultKinds = []simFault{fDial, fTimeout, fDrop, f5xx, fGarbage, fPartial, fHTML401, fHTML403, fGQLError, fForbidden, f429,
	fErrorsObject, fErrorsNonString, fBOM, fTrailingNewline, fGateway401, f429Huge}

// delivers says an answer of this shape carries the token asked for (so a refresh was applied).
func (f simFault) delivers() bool {
	switch f {
	case fNone, fPartial, fErrorsObject, fErrorsNonString, fBOM, fTrailingNewline:
		return true
	}
	return false
}

type simDelivery struct {
	token  string
	instID int
	shape  simFault
}

// simClaims reads iat and exp without verifying, as the plugin does.
func simClaims(tok string) (iat, exp time.Time) {
	var c jwt.RegisteredClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok, &c); err != nil {
		return
	}
	if c.IssuedAt != nil {
		iat = c.IssuedAt.UTC()
	}
	if c.ExpiresAt != nil {
		exp = c.ExpiresAt.UTC()
	}
	return
}

// name is a token's short name for the schedule; never the token.
func (m *simInabit) name(tok string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if n, ok := m.names[tok]; ok {
		return n
	}
	if tok == "" {
		return "none"
	}
	return "unknown-token"
}

type pendingApply struct {
	token string
	at    time.Time
	sent  time.Time // when the client gave up on it
}

type simInabit struct {
	mu         sync.Mutex
	clock      *vclock
	rng        *rand.Rand
	key        []byte
	serial     int
	live       string
	loginLife  time.Duration
	accessLife time.Duration
	minted     []string          // every JWT handed out, login and access
	names      map[string]string // token -> short name for the schedule ("L3", "A7")
	deliveries []simDelivery     // refresh answers that reached a node, in order
	killedBy   map[string]string // login token -> "refresh", "support" or "expired"
	successor  map[string]string // login token -> the token a refresh of it minted
	delivered  map[string]int    // login token -> id of the instance an answer carried it to
	rejectedTo map[string]map[int]bool
	rejectedAt map[string]map[int]time.Time // when inabit first told an instance a token is dead
	// proofSeq and rejectSeq order, per login token and instance, the last access token inabit
	// issued with it and the last UNAUTHENTICATED it answered (glitches included): a refresh needs
	// proof of life in the sending process, not contradicted since.
	seq                 int
	proofSeq, rejectSeq map[string]map[int]int
	// glitchOK says a read (not a rotation's probe) is asking; glitched: the live tokens inabit
	// has once wrongly rejected (at most once each: two answers apart are inabit's word).
	glitchOK func() bool
	glitched map[string]bool
	tried    map[string]bool // login tokens a refresh was sent with
	inflight map[string]int  // login token -> refreshes with it that inabit is handling now
	crashed  map[int]bool    // instances whose plugin process is gone
	pending  []pendingApply
	operator string // a support-issued token the operator has not managed to write yet

	faultRate float64
	outage    bool
	grace     func() time.Duration // bound for applies after the client gave up

	callN, hookAt int
	hook          func()
	onRefresh     func(instID int, token string, concurrent bool)
	// onAccess says, when inabit mints an access token (mu held), whether the login token that
	// minted it is the one in use on the fetching node: stored, or held in its memory.
	onAccess    func(inst *simInstance, login string) bool
	accessMints map[string]simAccessMint
	note        func(format string, args ...interface{})
	applyNote   string

	// soak figures
	faults, applied, deliveredN, refreshes int
}

func newSimInabit(clock *vclock, rng *rand.Rand) *simInabit {
	return &simInabit{clock: clock, rng: rng, key: []byte("simulated inabit signing key"),
		loginLife: 30 * 24 * time.Hour, accessLife: 15 * time.Minute,
		names: map[string]string{}, killedBy: map[string]string{}, successor: map[string]string{}, delivered: map[string]int{},
		rejectedTo: map[string]map[int]bool{}, rejectedAt: map[string]map[int]time.Time{}, accessMints: map[string]simAccessMint{},
		proofSeq: map[string]map[int]int{}, rejectSeq: map[string]map[int]int{}, glitched: map[string]bool{}, tried: map[string]bool{},
		inflight: map[string]int{}, crashed: map[int]bool{}}
}

func (m *simInabit) mintLocked(kind string, life time.Duration) string {
	m.serial++
	now := m.clock.now()
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": "sim-api-user", "typ": kind, "jti": fmt.Sprint(m.serial),
		"iat": now.Unix(), "exp": now.Add(life).Unix(),
	}).SignedString(m.key)
	if err != nil {
		panic(err)
	}
	m.minted = append(m.minted, tok)
	m.names[tok] = fmt.Sprintf("%s%d", strings.ToUpper(kind[:1]), m.serial)
	return tok
}

// supportIssue is inabit support handing the operator a new login token; the old one dies.
func (m *simInabit) supportIssue() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live != "" {
		m.killedBy[m.live] = "support"
	}
	m.live = m.mintLocked("login", m.loginLife)
	m.operator = m.live
	return m.live
}

// revoke is inabit support killing the live login token outside Vault (a leak, an offboarding).
func (m *simInabit) revoke() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	tok := m.live
	if tok != "" {
		m.killedBy[tok] = "revoked"
		m.live = ""
	}
	return tok
}

// deadLocked says inabit rejects tok now (true time).
func (m *simInabit) deadLocked(tok string) bool { return !m.aliveLocked(tok) }

func (m *simInabit) markLocked(seqs map[string]map[int]int, tok string, instID int) {
	m.seq++
	if seqs[tok] == nil {
		seqs[tok] = map[int]int{}
	}
	seqs[tok][instID] = m.seq
}

func (m *simInabit) armHook(at int, fn func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.callN, m.hookAt, m.hook = 0, at, fn
}

func (m *simInabit) mintedTokens() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.minted...)
}

// aliveLocked says whether inabit accepts tok now; an expired live token dies here.
func (m *simInabit) aliveLocked(tok string) bool {
	if tok == "" || tok != m.live {
		return false
	}
	if _, exp := simClaims(tok); !exp.IsZero() && !exp.After(m.clock.now()) {
		m.killedBy[tok] = "expired"
		m.live = ""
		return false
	}
	return true
}

func (m *simInabit) applyLocked(old string) string {
	nt := m.mintLocked("login", m.loginLife)
	m.killedBy[old] = "refresh"
	m.successor[old] = nt
	m.live = nt
	m.applied++
	return nt
}

// settle applies refreshes whose time has come (inabit finishing work the client gave up on).
func (m *simInabit) settle() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.settleLocked()
}

// lateApplyBound bounds how long after the client gave up inabit applies a refresh.
func lateApplyBound(grace time.Duration) time.Duration { return min(5*time.Minute, grace/2) }

func (m *simInabit) settleLocked() {
	now := m.clock.now()
	kept := m.pending[:0]
	bound := lateApplyBound(m.grace())
	for _, p := range m.pending {
		// refresh_grace_period is the operator's word for how late inabit applies a refresh: an
		// apply still pending when it is lowered comes within the new word.
		if latest := p.sent.Add(time.Second + bound); p.at.After(latest) {
			p.at = latest
		}
		switch {
		case p.at.After(now):
			kept = append(kept, p)
		case m.aliveLocked(p.token):
			m.note("inabit applies the refresh of %s it had been given earlier: %s is live now", m.names[p.token], m.names[m.applyLocked(p.token)])
		}
	}
	m.pending = kept
}
