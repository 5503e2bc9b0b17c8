package inabit

// The simulation's invariants, checked against the model's truth (inabit's live token, the true
// virtual time, what each node holds in memory) after every step and some during requests. Storage
// is read raw, by the stored JSON's field names and types, never by the operator's prose.
//
//	(a)  inabit's live login token is stored, held in memory by the active node, gone with a dead
//	     node, or the status is pending (outcome_check_at) or LOST; a-lost: LOST never while the
//	     refresh's answer sits on a running node; a-sticky: login_token_lost is cleared only with
//	     a new login token
//	(b)  login_token_lost never on a token inabit accepts
//	(c)  no refresh with a token inabit told that node is dead, or stored as lost, or without
//	     proof of life in the sending process (an access token issued to it, no rejection since)
//	(d)  no JWT or signature in logs, events, errors, warnings, config reads
//	(e)  a fault-free tick refreshes a live, healthy token that is due on the node's clock
//	(f)  a periodic first attempt never before the token is due on the node's clock
//	(g)  a refresh answer that reached a node whose storage took every write is saved
//	(h)  with inabit and storage healthy, the mount settles within a bound (sim_time_test.go)
//	(i)  a fault-free tick after inabit told the active node the stored token is dead never
//	     leaves a healthy status
//	(j)  a served access token was minted by the login token stored or held by the serving node
//	     at fetch time, and its lease ends before the token's exp
//	(k)  reads succeed when inabit is up, storage healthy, the stored token alive, no WAL entry
//	once a request sends at most one refresh, never while an earlier one of the token may apply

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

func (s *sim) violate(inv, format string, args ...interface{}) {
	if s.fail != nil {
		return
	}
	for _, ign := range strings.Split(*simIgnore, ",") {
		if ign == inv {
			return
		}
	}
	s.fail = &simViolation{step: s.step, inv: inv, msg: fmt.Sprintf(format, args...)}
}

// rawConfig is the stored config entry as JSON fields; callers must not modify it.
func (s *sim) rawConfig() map[string]interface{} {
	ver := s.store.version()
	if s.cfgCache != nil && s.cfgVer == ver {
		return s.cfgCache
	}
	var cfg map[string]interface{}
	if raw := s.store.raw("config"); raw == nil || json.Unmarshal(raw, &cfg) != nil {
		cfg = nil
	}
	s.cfgCache, s.cfgVer = cfg, ver
	return cfg
}

func cfgString(cfg map[string]interface{}, k string) string {
	if v, ok := cfg[k].(string); ok {
		return v
	}
	return ""
}

func cfgDuration(cfg map[string]interface{}, k string, def time.Duration) time.Duration {
	if v, ok := cfg[k].(float64); ok && v > 0 {
		return time.Duration(v)
	}
	return def
}

func (s *sim) rawWAL(key string) (kind string, data map[string]interface{}, started time.Time) {
	var e struct {
		Kind string                 `json:"type"`
		Data map[string]interface{} `json:"data"`
	}
	if json.Unmarshal(s.store.raw(key), &e) != nil || e.Data == nil {
		return "", nil, time.Time{}
	}
	started, _ = time.Parse(time.RFC3339Nano, fmt.Sprint(e.Data["started_at"]))
	return e.Kind, e.Data, started
}

func simHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// onRefresh runs when a refresh reaches inabit: (c) never with a token inabit told this node is
// dead, or that the plugin itself stored as lost; at most one per request and never while inabit
// may still apply an earlier refresh of the same token; (f) a periodic first attempt with a token
// only when it is due.
func (s *sim) onRefresh(instID int, tok string, concurrent bool) {
	if concurrent {
		s.violate("once", "instance %d sent a refresh with %s while inabit was still working on an earlier refresh of it", instID, s.model.name(tok))
	}
	var req *simReq
	if len(s.reqs) > 0 {
		req = s.reqs[len(s.reqs)-1]
		req.refreshes++
		if req.refreshes > 1 {
			s.violate("once", "a %s request sent %d refreshes", req.label, req.refreshes)
		}
	}
	s.model.mu.Lock()
	proof, rejected := s.model.proofSeq[tok][instID], s.model.rejectSeq[tok][instID]
	toldThis, toldAny := s.model.rejectedTo[tok][instID], len(s.model.rejectedTo[tok]) > 0
	retry := s.model.tried[tok]
	s.model.tried[tok] = true
	s.model.mu.Unlock()
	name := s.model.name(tok)
	cfg := s.rawConfig()
	// At the expiry deadline a node may refresh without proof of life when inabit cannot answer
	// its probe, as long as it has seen no rejection of the token: waiting would let it expire.
	atDeadline := false
	if inst := s.instByID(instID); inst != nil && rejected == 0 {
		dl := expiryDeadlineOf(tok, cfgDuration(cfg, "request_timeout", 30*time.Second))
		atDeadline = !dl.IsZero() && !s.nodeNow(inst.slot).Before(dl)
	}
	switch {
	case (proof == 0 || rejected > proof) && !atDeadline:
		s.violate("c", "instance %d sent a refresh with %s without proof of life in its process (inabit issued it no access token with %s, or rejected %s since)",
			instID, name, name, name)
	case toldThis:
		s.violate("c", "instance %d sent a refresh with %s after inabit had answered it that %s is dead", instID, name, name)
	case toldAny && cfgString(cfg, "login_token") == tok && cfgLost(cfg):
		s.violate("c", "a refresh was sent with %s, which inabit rejected and storage records as LOST", name)
	}
	// A retry of a failed attempt (one inabit saw, an operator's rotate-root, or one the plugin
	// recorded as failed) may come before the token is due; a first attempt may not.
	failed := s.manual[tok] || cfgString(cfg, "login_token") == tok && cfgFailures(cfg) != 0
	if inst := s.instByID(instID); req != nil && req.label == "tick" && !retry && !failed && inst != nil {
		// The schedule is the node's own wall clock's business: due is judged on it.
		due := dueAt(tok, cfgDuration(cfg, "rotation_period", 0))
		if now := s.nodeNow(inst.slot); !due.IsZero() && now.Before(due.Add(-2*time.Second)) {
			s.violate("f", "a periodic tick refreshed %s at %s on node %d's clock although it is due only at %s",
				name, now.Format("01-02 15:04:05"), inst.slot, due.Format("01-02 15:04:05"))
		}
	}
}

// reaches says whether the refresh chain from tok leads to target.
func (m *simInabit) reachesLocked(tok, target string) bool {
	for i := 0; tok != "" && i < 10000; i++ {
		if tok == target {
			return true
		}
		tok = m.successor[tok]
	}
	return false
}

// checkSaved: a refresh answer that reached a node whose storage took every write must be saved
// by the time its request returns (a hung-up caller is no excuse).
func (s *sim) checkSaved(req *simReq, deliveredBefore int) {
	s.store.mu.Lock()
	stepped := req.inst.stepped
	s.store.mu.Unlock()
	if stepped || req.stats.injectedWriteFaults > 0 {
		return
	}
	stored := cfgString(s.rawConfig(), "login_token")
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	for _, d := range s.model.deliveries[deliveredBefore:] {
		if d.instID == req.inst.id && !s.model.reachesLocked(d.token, stored) {
			answer := "an answer"
			if d.shape != fNone {
				answer = "an answer of shape " + string(d.shape)
			}
			s.violate("g", "the %s request got %s in %s from inabit, storage refused no config write (%d calls failed on a cancelled context), yet storage holds %s when it returns",
				req.label, s.model.names[d.token], answer, req.stats.ctxFailures, s.model.names[stored])
			return
		}
	}
}

func (s *sim) instByID(id int) *simInstance {
	for _, inst := range s.insts {
		if inst.id == id {
			return inst
		}
	}
	return nil
}

// check runs the per-step invariants (a), (b), (d).
func (s *sim) check() {
	s.model.settle()
	s.checkLeaks()
	cfg := s.rawConfig()
	if cfg == nil || s.fail != nil {
		return
	}
	stored := cfgString(cfg, "login_token")
	lost := cfgLost(cfg)
	unknown := !cfgTime(cfg, "outcome_check_at").IsZero()
	if lost && !s.wasLost {
		s.st.lost++
	}
	if unknown && !s.wasUnkn {
		s.st.unknown++
	}
	s.wasLost, s.wasUnkn = lost, unknown

	m := s.model
	m.mu.Lock()
	live := m.live
	if !m.aliveLocked(live) {
		live = ""
	}
	nameOf := map[string]string{}
	for _, t := range []string{stored, live, m.successor[stored]} {
		nameOf[t] = m.names[t]
	}
	names := func(t string) string { return nameOf[t] }
	killed, succ := m.killedBy[stored], m.successor[stored]
	succTo, succDelivered := m.delivered[succ]
	liveTo, liveDelivered := m.delivered[live]
	operator := m.operator
	m.mu.Unlock()
	active := s.slots[s.active]

	if lost {
		s.lostFor = stored
		switch {
		case stored == live:
			s.violate("b", "storage says the login token is lost (login_token_lost), but the stored token %s is live at inabit", names(stored))
		case killed == "refresh" && succDelivered && !s.instByID(succTo).dead:
			s.violate("a-lost", "LOST recorded, but inabit's answer with %s (the refresh of the stored %s) reached instance %d, which is still running",
				names(succ), names(stored), succTo)
		}
		return
	}
	if s.lostFor != "" && s.lostFor == stored {
		s.violate("a-sticky", "storage recorded login_token_lost for %s, and a later write cleared it (last_rotation_error now %q)", names(stored), cfgString(cfg, "last_rotation_error"))
		return
	}
	if live == "" || stored == live || live == operator {
		return
	}
	if liveDelivered && liveTo == active.id && heldBy(active) == live {
		return // held in memory on the active node, which serves it
	}
	if liveDelivered && s.instByID(liveTo).dead {
		return // truly gone with the node that held it unsaved; LOST must follow, and is justified
	}
	for _, key := range s.store.rawKeys("wal/") {
		_, data, _ := s.rawWAL(key)
		if data == nil || data["old_token_sha256"] != simHash(stored) {
			continue
		}
		if unknown { // pending: the in-flight status is written before the refresh is sent
			return
		}
	}
	where := "never delivered to any node"
	if liveDelivered {
		where = fmt.Sprintf("delivered to instance %d (active is %d)", liveTo, active.id)
	}
	s.violate("a", "inabit's live login token %s (%s) is not in storage (stored %s, killed by %q), not held in memory, and the status is neither lost nor pending (outcome_check_at empty): %q",
		names(live), where, names(stored), killed, cfgString(cfg, "last_rotation_error"))
}

func cfgLost(cfg map[string]interface{}) bool { return cfg["login_token_lost"] == true }

func cfgTime(cfg map[string]interface{}, k string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, cfgString(cfg, k))
	return t
}

func cfgFailures(cfg map[string]interface{}) int {
	f, _ := cfg["rotation_failures"].(float64)
	return int(f)
}

// cfgHealthy: the stored status reports no problem and no refresh in flight.
func (s *sim) cfgHealthy(cfg map[string]interface{}) bool {
	return cfgString(cfg, "last_rotation_error") == "" && !cfgLost(cfg) && cfgTime(cfg, "outcome_check_at").IsZero() &&
		cfg["probe_before_refresh"] != true && len(s.store.rawKeys("wal/")) == 0
}

// checkLeaks is invariant (d): no JWT inabit minted in any log line, event, error, warning or
// config read.
func (s *sim) checkLeaks() {
	toks := s.model.mintedTokens()
	if len(toks) == 0 {
		return
	}
	texts := s.texts
	s.texts = nil
	for _, inst := range s.insts {
		var l string
		l, inst.logOff = inst.logs.since(inst.logOff)
		texts = append(texts, l)
		inst.events.Lock()
		for _, ev := range inst.events.Events[inst.eventOff:] {
			texts = append(texts, string(ev.Type)+" "+ev.Event.String())
		}
		inst.eventOff = len(inst.events.Events)
		inst.events.Unlock()
	}
	header := strings.SplitN(toks[0], ".", 2)[0]
	for _, txt := range texts {
		if strings.Contains(txt, header) {
			s.violate("d", "a JWT appears in plugin output: %.300s", txt)
			return
		}
		for _, tok := range toks {
			if sig := tok[strings.LastIndex(tok, ".")+1:]; strings.Contains(txt, sig) {
				s.violate("d", "a token's signature appears in plugin output: %.300s", txt)
				return
			}
		}
	}
}

// onAccess (j, at mint time): the login token that minted an access token is the one in use on
// the fetching node: stored, or held in that node's memory. Called with the model's lock held,
// possibly from a shared fetch's goroutine: it reads storage raw and the node's login state only.
func (s *sim) onAccess(inst *simInstance, login string) bool {
	var cfg struct {
		LoginToken string `json:"login_token"`
	}
	_ = json.Unmarshal(s.store.raw("config"), &cfg)
	return login == cfg.LoginToken || inst != nil && login == heldBy(inst)
}

// checkServed is invariant (j) for a token read that succeeded: the access token served was
// minted by inabit with the login token in use on the serving node at fetch time, and its lease
// ends before the token does (inabit's exp, on the true clock).
func (s *sim) checkServed(inst *simInstance, resp *logical.Response) {
	access, _ := resp.Data["access_token"].(string)
	s.model.mu.Lock()
	mint, ok := s.model.accessMints[access]
	loginName, accessName := s.model.names[mint.login], s.model.names[access]
	s.model.mu.Unlock()
	switch {
	case !ok:
		s.violate("j", "node %d served an access token inabit never minted", inst.slot)
	case !mint.current:
		s.violate("j", "node %d served %s, minted with login token %s, which was neither stored nor held in memory by instance %d when it was fetched",
			inst.slot, accessName, loginName, mint.instID)
	case resp.Secret != nil && s.clock.now().Add(resp.Secret.TTL).After(mint.exp):
		s.violate("j", "node %d served %s with a lease of %s, which outlives the token (inabit's exp %s, now %s)",
			inst.slot, accessName, resp.Secret.TTL, mint.exp.Format("01-02 15:04:05"), s.clock.now().Format("01-02 15:04:05"))
	}
}

// readWorld is what invariant (k) needs to know before a token read.
type readWorld struct {
	healthy  bool // inabit up, storage without faults, the stored token alive, nothing in flight
	faults   int
	injected int
	why      string
}

func (s *sim) readWorldNow() readWorld {
	cfg := s.rawConfig()
	w := readWorld{}
	s.model.mu.Lock()
	alive := cfg != nil && s.model.aliveLocked(cfgString(cfg, "login_token"))
	outage := s.model.outage
	w.faults = s.model.faults
	s.model.mu.Unlock()
	s.store.mu.Lock()
	w.injected = s.store.injected
	s.store.mu.Unlock()
	w.healthy = alive && !outage && !s.store.faultsActive() && len(s.store.rawKeys("wal/")) == 0
	if w.healthy {
		w.why = fmt.Sprintf("inabit up, storage healthy, the stored %s alive, no WAL entry", s.model.name(cfgString(cfg, "login_token")))
	}
	return w
}

// checkRead is invariant (k): a token read fails only if something was wrong: inabit or storage
// failed a call during it, the stored token is dead, or a rotation was in flight.
func (s *sim) checkRead(inst *simInstance, before readWorld, resp *logical.Response, err error) {
	if err == nil && resp != nil && !resp.IsError() {
		s.checkServed(inst, resp)
		return
	}
	if !before.healthy {
		return
	}
	if cfg, _ := inst.b.login.current(); cfg != nil && cfg.LoginTokenLost && s.lagging(inst) {
		return // a standby Vault has not yet told of the new token answers from its cached LOST
	}
	after := s.readWorldNow()
	if after.faults != before.faults || after.injected != before.injected || !after.healthy {
		return
	}
	s.violate("k", "a token read on node %d failed (%s) although %s", inst.slot, outcome(resp, err), before.why)
}
