package inabit

// The simulation's invariants, checked against the model's truth after every step (and some
// during requests). Storage is read raw, by the field names of the stored JSON.

import (
	"context"
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
	toldThis, toldAny := s.model.rejectedTo[tok][instID], len(s.model.rejectedTo[tok]) > 0
	retry := s.model.tried[tok]
	s.model.tried[tok] = true
	s.model.mu.Unlock()
	name := s.model.name(tok)
	cfg := s.rawConfig()
	switch {
	case toldThis:
		s.violate("c", "instance %d sent a refresh with %s after inabit had answered it that %s is dead", instID, name, name)
	case toldAny && cfgString(cfg, "login_token") == tok && strings.HasPrefix(cfgString(cfg, "last_rotation_error"), "LOGIN TOKEN LOST"):
		s.violate("c", "a refresh was sent with %s, which inabit rejected and storage records as LOST", name)
	}
	// A retry of a failed attempt (one inabit saw, an operator's rotate-root, or one the plugin
	// recorded as failed) may come before the token is due; a first attempt may not.
	failed := s.manual[tok] || cfgString(cfg, "login_token") == tok && cfg["rotation_failures"] != nil && cfg["rotation_failures"] != float64(0) &&
		!strings.Contains(cfgString(cfg, "last_rotation_error"), "held in memory")
	if req != nil && req.label == "tick" && !retry && !failed {
		due := dueAt(tok, cfgDuration(cfg, "rotation_period", 0))
		if !due.IsZero() && s.clock.now().Before(due.Add(-2*time.Second)) {
			s.violate("f", "a periodic tick refreshed %s at %s although it is due only at %s",
				name, s.clock.now().Format("01-02 15:04:05"), due.Format("01-02 15:04:05"))
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
			if d.partial {
				answer = "a partial answer (data and errors[])"
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

// check runs the per-step invariants (a), (b), (d) and the LOST justification.
func (s *sim) check() {
	s.model.settle()
	s.checkLeaks()
	cfg := s.rawConfig()
	if cfg == nil || s.fail != nil {
		return
	}
	stored, status := cfgString(cfg, "login_token"), cfgString(cfg, "last_rotation_error")
	lost := strings.HasPrefix(status, "LOGIN TOKEN LOST")
	unknown := strings.Contains(status, "outcome unknown")
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
			s.violate("b", "storage says LOGIN TOKEN LOST, but the stored token %s is live at inabit", names(stored))
		case killed == "refresh" && succDelivered && !s.instByID(succTo).dead:
			s.violate("a-lost", "LOST recorded, but inabit's answer with %s (the refresh of the stored %s) reached instance %d, which is still running",
				names(succ), names(stored), succTo)
		}
		return
	}
	if s.lostFor != "" && s.lostFor == stored {
		s.violate("a-sticky", "storage recorded LOGIN TOKEN LOST for %s, and a later write replaced the status with %q", names(stored), status)
		return
	}
	if live == "" || stored == live || live == operator {
		return
	}
	if liveDelivered && liveTo == active.id && strings.Contains(s.activeStatus(), "held in memory") {
		return
	}
	if liveDelivered && s.instByID(liveTo).dead {
		return // truly gone with the node that held it unsaved; LOST must follow, and is justified
	}
	for _, key := range s.store.rawKeys("wal/") {
		_, data, _ := s.rawWAL(key)
		if data == nil || data["old_token_sha256"] != simHash(stored) {
			continue
		}
		s.store.mu.Lock()
		refused := s.store.refused > s.store.refusedAt[key]
		s.store.mu.Unlock()
		if unknown || refused { // storage refused a write since the entry was made
			return
		}
		if strings.Contains(status, "outcome is still unknown") || strings.Contains(status, "could not be asked whether") {
			s.violate("a-wording", "the outcome of the refresh of %s is pending (WAL entry kept), but the status does not say \"outcome unknown\": %q", names(stored), status)
			return
		}
	}
	where := "never delivered to any node"
	if liveDelivered {
		where = fmt.Sprintf("delivered to instance %d (active is %d)", liveTo, active.id)
	}
	s.violate("a", "inabit's live login token %s (%s) is not in storage (stored %s, killed by %q), not held in memory, and the status is neither LOST nor outcome unknown: %q",
		names(live), where, names(stored), killed, status)
}

// activeStatus is the status the active node reports (its in-memory view when it holds an
// unsaved token), read without faults or hooks.
func (s *sim) activeStatus() string {
	inst := s.slots[s.active]
	s.store.setQuiet(true)
	defer s.store.setQuiet(false)
	resp, err := inst.b.HandleRequest(context.Background(), &logical.Request{Operation: logical.ReadOperation, Path: "config", Storage: inst.view})
	if err != nil || resp == nil || resp.Data == nil {
		return ""
	}
	s.noteResponse(resp, nil, false)
	return fmt.Sprint(resp.Data["last_rotation_error"])
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
