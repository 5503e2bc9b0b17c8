package inabit

// The simulated inabit on the wire: RoundTrip parses the GraphQL call, picks a fault, and answers
// as inabit (or a proxy, a WAF, a broken connection) would.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

type simTransport struct {
	m      *simInabit
	instID int
	inst   *simInstance
}

type simTimeout struct{}

func (simTimeout) Error() string {
	return "net/http: request canceled (Client.Timeout exceeded while awaiting headers)"
}

func (simTimeout) Timeout() bool { return true }

func (simTimeout) Temporary() bool { return true }

var _ net.Error = simTimeout{}

type cutBody struct{ r io.Reader }

func (c *cutBody) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

func (c *cutBody) Close() error { return nil }

func simResponse(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body))}
}

// gqlData is an answer carrying tok in data.<field>, in one of the shapes that deliver it.
func gqlData(field, tok string, shape simFault) string {
	if shape == fTrailingNewline {
		tok += "\n" // inside the JSON string: the token's text ends with a newline
	}
	out := map[string]interface{}{"data": map[string]string{field: tok}}
	switch shape {
	case fPartial:
		out["errors"] = []map[string]interface{}{{"message": "field " + field + " is deprecated", "extensions": map[string]string{"code": "DEPRECATED"}}}
	case fErrorsObject:
		out["errors"] = map[string]interface{}{"message": "field " + field + " is deprecated", "extensions": map[string]string{"code": "DEPRECATED"}}
	case fErrorsNonString:
		out["errors"] = []map[string]interface{}{{"message": map[string]int{"code": 7}, "extensions": map[string]int{"code": 42}}}
	}
	b, _ := json.Marshal(out)
	if shape == fBOM {
		return "\xEF\xBB\xBF" + string(b)
	}
	return string(b)
}

const gqlUnauthenticated = `{"data":null,"errors":[{"message":"Unauthorized: invalid or expired login token","extensions":{"code":"UNAUTHENTICATED"}}]}`

func (t *simTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	m := t.m
	ctx := req.Context()
	body, _ := io.ReadAll(req.Body)
	_ = req.Body.Close()
	if err := ctx.Err(); err != nil {
		return nil, err // net/http does not send a request whose context is done
	}
	var q struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(body, &q)
	field := ""
	switch {
	case strings.Contains(q.Query, "refreshApiUserLoginToken"):
		field = "refreshApiUserLoginToken"
	case strings.Contains(q.Query, "getApiUserAccessToken"):
		field = "getApiUserAccessToken"
	default:
		return simResponse(400, `{"errors":[{"message":"unknown query"}]}`), nil
	}
	refresh := field == "refreshApiUserLoginToken"
	tok := strings.TrimPrefix(req.Header.Get("Authorization"), "Bearer ")
	m.mu.Lock()
	crashed := m.crashed[t.instID]
	m.mu.Unlock()
	if crashed {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("plugin process is gone")}
	}
	timeout := 30 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl).Round(time.Second)
	}

	m.mu.Lock()
	var hook func()
	if m.hook != nil && onSimGoroutine() {
		m.callN++
		if m.callN == m.hookAt {
			hook, m.hook = m.hook, nil
		}
	}
	onRefresh := m.onRefresh
	concurrent := false
	if refresh {
		m.refreshes++
		concurrent = m.inflight[tok] > 0
		for _, p := range m.pending {
			concurrent = concurrent || p.token == tok
		}
		m.inflight[tok]++
		defer func() {
			m.mu.Lock()
			m.inflight[tok]--
			m.mu.Unlock()
		}()
	}
	m.mu.Unlock()
	if refresh && onRefresh != nil {
		onRefresh(t.instID, tok, concurrent)
	}
	if hook != nil {
		hook() // the call is at inabit now: the caller may hang up, or the node step down
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.settleLocked()
	fault := fNone
	if m.outage {
		fault = f5xx
	} else if m.rng.Float64() < m.faultRate {
		fault = simFaultKinds[m.rng.Intn(len(simFaultKinds))]
	}
	if fault == fForbidden && !refresh {
		fault = fGQLError
	}
	if fault != fNone {
		m.faults++
	}
	cancelled := ctx.Err() != nil
	if cancelled && fault != fDial {
		fault = fDrop
	}
	if fault == fTimeout {
		m.clock.advance(timeout)
	} else {
		m.clock.advance(time.Duration(20+m.rng.Intn(1500)) * time.Millisecond)
	}

	op := "access"
	if refresh {
		op = "refresh"
	}
	what := fmt.Sprintf("inabit %s with %s from instance %d", op, m.names[tok], t.instID)
	if tok != "" && m.names[tok] == "" {
		what = fmt.Sprintf("inabit %s with a token it never issued from instance %d", op, t.instID)
	}
	if cancelled {
		what += " (caller's context done)"
	}
	if fault != fNone && !fault.delivers() {
		if refresh && m.aliveLocked(tok) && (fault == fTimeout || fault == fDrop || fault == f5xx || fault == fGarbage) {
			defer func() { m.note("%s: %s, %s", what, fault, m.applyNote) }()
		} else {
			m.note("%s: %s, nothing applied", what, fault)
		}
	}
	switch fault {
	case fDial:
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	case fHTML401:
		return simResponse(401, "<html><head><title>401 Authorization Required</title></head><body>proxy</body></html>"), nil
	case fHTML403:
		return simResponse(403, "<html><head><title>403 Forbidden</title></head><body>Request blocked by WAF</body></html>"), nil
	case fGQLError:
		return simResponse(200, `{"data":null,"errors":[{"message":"internal error","extensions":{"code":"INTERNAL_SERVER_ERROR"}}]}`), nil
	case fForbidden:
		return simResponse(200, `{"data":null,"errors":[{"message":"this role may not refresh its login token","extensions":{"code":"FORBIDDEN"}}]}`), nil
	case f429:
		r := simResponse(429, `{"errors":[{"message":"rate limited"}]}`)
		if m.rng.Intn(2) == 0 {
			r.Header.Set("Retry-After", "120") // longer than the client waits: no real sleep
		}
		return r, nil
	case f429Huge:
		r := simResponse(429, `{"errors":[{"message":"rate limited"}]}`)
		r.Header.Set("Retry-After", []string{"315360000", "99999999999999999999999"}[m.rng.Intn(2)])
		return r, nil
	case fGateway401:
		return simResponse(401, `{"message":"Unauthorized"}`), nil
	case fTimeout, fDrop, f5xx, fGarbage:
		if refresh && m.aliveLocked(tok) {
			m.applyNote = "never applied"
			switch m.rng.Intn(3) {
			case 0: // applied before the answer was lost
				m.applyNote = "applied before the answer was lost: " + m.names[m.applyLocked(tok)]
			case 1: // applied after the client gave up
				delay := time.Second + time.Duration(m.rng.Int63n(int64(lateApplyBound(m.grace()))))
				m.pending = append(m.pending, pendingApply{token: tok, at: m.clock.now().Add(delay), sent: m.clock.now()})
				m.applyNote = "to be applied at " + m.clock.now().Add(delay).Format("15:04:05")
			}
		}
		switch {
		case cancelled:
			return nil, ctx.Err()
		case fault == fTimeout:
			return nil, simTimeout{}
		case fault == fDrop:
			return &http.Response{StatusCode: 200, Header: http.Header{}, Body: &cutBody{strings.NewReader(`{"data":{"` + field)}}, nil
		case fault == f5xx:
			return simResponse([]int{500, 502, 503, 504}[m.rng.Intn(4)], "<html><title>Bad Gateway</title></html>"), nil
		default:
			return simResponse(200, []string{"<<garbage>>", `{"data":{"x"`, "\x00\x01\x02"}[m.rng.Intn(3)]), nil
		}
	}

	// inabit's own answer.
	if !refresh && m.aliveLocked(tok) && !m.glitched[tok] && m.glitchOK != nil && m.glitchOK() && m.rng.Intn(6) == 0 {
		// A glitch: inabit's own UNAUTHENTICATED for a live token, once.
		m.glitched[tok] = true
		m.faults++
		m.markLocked(m.rejectSeq, tok, t.instID)
		m.note("%s: UNAUTHENTICATED although it is live (a glitch)", what)
		return simResponse(401, gqlUnauthenticated), nil
	}
	if !m.aliveLocked(tok) {
		m.markLocked(m.rejectSeq, tok, t.instID)
		if m.rejectedTo[tok] == nil {
			m.rejectedTo[tok] = map[int]bool{}
		}
		m.rejectedTo[tok][t.instID] = true
		if m.rejectedAt[tok] == nil {
			m.rejectedAt[tok] = map[int]time.Time{}
		}
		if _, ok := m.rejectedAt[tok][t.instID]; !ok {
			m.rejectedAt[tok][t.instID] = m.clock.now()
		}
		m.note("%s: UNAUTHENTICATED (killed by %s)", what, m.killedBy[tok])
		if m.rng.Intn(2) == 0 {
			return simResponse(401, gqlUnauthenticated), nil
		}
		return simResponse(200, gqlUnauthenticated), nil
	}
	var answer string
	shape := ""
	if fault != fNone {
		shape = " (shape: " + string(fault) + ")"
	}
	if refresh {
		answer = m.applyLocked(tok)
		m.note("%s: %s answered%s", what, m.names[answer], shape)
		m.delivered[answer] = t.instID
		m.deliveries = append(m.deliveries, simDelivery{token: answer, instID: t.instID, shape: fault})
		m.deliveredN++
	} else {
		answer = m.mintLocked("access", m.accessLife)
		m.note("%s: %s answered%s", what, m.names[answer], shape)
		m.markLocked(m.proofSeq, tok, t.instID)
		_, exp := simClaims(answer)
		mint := simAccessMint{login: tok, instID: t.instID, current: true, exp: exp}
		if m.onAccess != nil {
			mint.current = m.onAccess(t.inst, tok)
		}
		m.accessMints[answer] = mint
	}
	return simResponse(200, gqlData(field, answer, fault)), nil
}

var _ http.RoundTripper = (*simTransport)(nil)
