package inabit

// The simulation's steps: what operators, clients, Vault and the clock do to the plugin.

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

var (
	simURLs            = []string{"https://api.inabit.sim/graphql", "https://api2.inabit.sim/graphql", "http://127.0.0.1:7777/graphql"}
	simRotationPeriods = []int{3600, 6 * 3600, 24 * 3600, 72 * 3600, 360 * 3600}
	simLifetimes       = []time.Duration{time.Hour, 6 * time.Hour, 48 * time.Hour, 30 * 24 * time.Hour}
)

func (s *sim) setup() {
	tok := s.model.supportIssue()
	life := s.model.loginLife
	rp := simRotationPeriods[0]
	for _, p := range simRotationPeriods {
		if time.Duration(p)*time.Second < life && s.rng.Intn(2) == 0 {
			rp = p
		}
	}
	data := map[string]interface{}{"login_token": tok, "url": simURLs[0], "rotation_period": rp,
		"request_timeout": []int{5, 30, 60}[s.rng.Intn(3)], "verify_connection": false}
	resp, err := s.request(s.slots[s.active], "config-write", context.Background(), logical.UpdateOperation, "config", data)
	s.logf("setup: %d nodes, inabit fault rate %.2f, login tokens live %s; config write %s rp=%ds -> %s",
		len(s.slots), s.model.faultRate, life, s.model.name(tok), rp, outcome(resp, err))
	if err != nil || resp.IsError() {
		panic("initial config write failed: " + outcome(resp, err))
	}
	s.model.operator = ""
	s.noteStored()
	s.skewAtStart()
}

func (s *sim) runStep() {
	switch w := s.rng.Intn(100); {
	case w < 16:
		s.tokenRead()
	case w < 19:
		s.configRead()
	case w < 26:
		s.configWrite(s.rng.Intn(4) == 0)
	case w < 35:
		s.rotateRoot()
	case w < 50:
		s.tick(0.2)
	case w < 62:
		s.jump()
	case w < 65:
		s.restart()
	case w < 68:
		s.stepDown("step")
	case w < 75:
		s.storageFaults()
	case w < 78:
		s.storageOutage()
	case w < 82:
		s.inabitFaults()
	case w < 84:
		s.model.mu.Lock()
		s.model.loginLife = simLifetimes[s.rng.Intn(len(simLifetimes))]
		s.logf("inabit now issues login tokens living %s", s.model.loginLife)
		s.model.mu.Unlock()
	case w < 88:
		s.clockStep()
	case w < 91:
		s.invalidate()
	case w < 93:
		s.revoke()
	case w < 95:
		s.calm()
	default:
		s.operator()
	}
}

// skewAtStart picks the nodes' wall-clock errors once the mount is set up (the first config write
// must pass the token's iat/exp checks): most are small, some beyond refresh_grace_period + 5 min.
func (s *sim) skewAtStart() {
	for slot := range s.skews {
		var d time.Duration
		switch r := s.rng.Intn(10); {
		case r < 3:
		case r < 5:
			d = time.Duration(1+s.rng.Intn(120)) * time.Second
		case r < 7:
			d = time.Duration(1+s.rng.Intn(30)) * time.Minute
		default:
			d = s.grace() + 5*time.Minute + time.Duration(1+s.rng.Intn(120))*time.Minute
		}
		if s.rng.Intn(2) == 0 {
			d = -d
		}
		s.setSkew(slot, d)
	}
	s.logf("node clocks: %s", s.skewList())
}

func (s *sim) skewList() string {
	var parts []string
	for slot := range s.skews {
		parts = append(parts, fmt.Sprintf("node %d %+v", slot, s.skew(slot)))
	}
	return strings.Join(parts, ", ")
}

// clockStep steps one node's wall clock forwards or backwards, seconds to days, or lets NTP set
// it right (itself a step).
func (s *sim) clockStep() {
	slot := s.rng.Intn(len(s.slots))
	if s.rng.Intn(4) == 0 {
		s.setSkew(slot, 0)
		s.logf("node %d's wall clock set right (now %s)", slot, s.skewList())
		return
	}
	var d time.Duration
	switch r := s.rng.Intn(10); {
	case r < 3:
		d = time.Duration(1+s.rng.Intn(59)) * time.Second
	case r < 6:
		d = time.Duration(1+s.rng.Intn(59)) * time.Minute
	case r < 9:
		d = time.Duration(1+s.rng.Intn(23)) * time.Hour
	default:
		d = time.Duration(1+s.rng.Intn(5)) * 24 * time.Hour
	}
	if s.rng.Intn(2) == 0 {
		d = -d
	}
	s.setSkew(slot, s.skew(slot)+d)
	s.logf("node %d's wall clock steps %+v (now %s)", slot, d, s.skewList())
}

// invalidate is Vault invalidating config on any node, the active one included (a replicated
// write, a mount reload).
func (s *sim) invalidate() {
	slot := s.rng.Intn(len(s.slots))
	s.slots[slot].b.InvalidateKey(context.Background(), "config")
	s.logf("config invalidated on node %d (active %v)", slot, slot == s.active)
}

// revoke is inabit support killing the live login token outside Vault.
func (s *sim) revoke() {
	tok := s.model.revoke()
	s.logf("inabit support revokes the live login token %s", s.model.name(tok))
}

// storageOutage makes every Put fail for many minutes while the active node stays active.
func (s *sim) storageOutage() {
	d := time.Duration(5+s.rng.Intn(120)) * time.Minute
	s.beginOutage(d)
	s.logf("storage outage: every Put fails for %s (until %s)", d, s.clock.now().Add(d).Format("01-02 15:04:05"))
}

func (s *sim) beginOutage(d time.Duration) {
	s.store.addFault(&storageFault{verb: "Put", lasting: true, until: s.clock.now().Add(d)})
}

// armHooks makes something happen in the middle of the next request, with probability p: the
// caller hangs up (or its deadline passes), or the node steps down, possibly with the new active
// node working while the old one's call is still in flight.
func (s *sim) armHooks(p float64, cancel context.CancelFunc) string {
	if s.rng.Float64() >= p {
		return ""
	}
	var fn func()
	what := ""
	switch a := s.rng.Intn(13); {
	case a < 6:
		what, fn = "caller hangs up", cancel
	case a < 7:
		what, fn = "step-down", func() { s.stepDown("mid-request") }
	case a < 8:
		what, fn = "plugin restart and new instance works", func() { s.restartActive(); s.nested() }
	case a < 10:
		what, fn = "step-down and new active works", func() { s.stepDown("mid-request"); s.nested() }
	case a < 11 && *simZombie:
		what, fn = "deposed, not yet noticed; new active works", func() { s.stepDownLate(); s.nested() }
	case a < 11:
		what, fn = "step-down and new active works", func() { s.stepDown("mid-request"); s.nested() }
	default:
		d := time.Duration(5+s.rng.Intn(120)) * time.Minute
		what, fn = fmt.Sprintf("storage outage begins (every Put fails for %s)", d), func() { s.beginOutage(d) }
	}
	hook := func() { s.st.hooks++; s.logf("  >> %s", what); fn() }
	if s.rng.Intn(2) == 0 {
		k := 1 + s.rng.Intn(8)
		s.store.armHook(k, hook)
		return fmt.Sprintf(" [%s at storage call %d]", what, k)
	}
	k := 1 + s.rng.Intn(2)
	s.model.armHook(k, hook)
	return fmt.Sprintf(" [%s at inabit call %d]", what, k)
}

func (s *sim) disarm() {
	s.store.disarm()
	s.model.armHook(0, nil)
}

func (s *sim) nested() {
	if s.rng.Intn(2) == 0 {
		s.rotateRootWith(0)
	} else {
		s.tick(0)
	}
}

func (s *sim) tokenRead() {
	inst := s.slots[s.rng.Intn(len(s.slots))]
	ctx, cancel := s.clock.withDeadline(60 * time.Second)
	defer cancel()
	before := s.readWorldNow()
	resp, err := s.request(inst, "token-read", ctx, logical.ReadOperation, "token", nil)
	s.logf("token read on node %d -> %s", inst.slot, outcome(resp, err))
	s.checkRead(inst, before, resp, err)
}

func (s *sim) configRead() {
	inst := s.slots[s.rng.Intn(len(s.slots))]
	resp, err := s.request(inst, "config-read", context.Background(), logical.ReadOperation, "config", nil)
	status := ""
	if resp != nil && resp.Data != nil {
		status = fmt.Sprint(resp.Data["last_rotation_error"])
	}
	s.logf("config read on node %d -> %s; status %q", inst.slot, outcome(resp, err), status)
}

func (s *sim) configWrite(newToken bool) {
	data := map[string]interface{}{"verify_connection": false}
	tok := ""
	if newToken {
		s.model.mu.Lock()
		tok = s.model.operator
		s.model.mu.Unlock()
		if tok == "" {
			tok = s.model.supportIssue()
		}
		data["login_token"] = tok
	}
	if s.rng.Intn(4) == 0 {
		data["url"] = simURLs[s.rng.Intn(len(simURLs))]
	}
	if s.rng.Intn(3) == 0 {
		data["rotation_period"] = simRotationPeriods[s.rng.Intn(len(simRotationPeriods))]
	}
	if s.rng.Intn(4) == 0 {
		data["request_timeout"] = []int{5, 30, 60}[s.rng.Intn(3)]
	}
	if s.rng.Intn(5) == 0 {
		data["access_token_min_ttl"] = []int{120, 600}[s.rng.Intn(2)]
	}
	if s.graceOK && s.rng.Intn(4) == 0 {
		data["refresh_grace_period"] = []int{30, 300, 600, 3600}[s.rng.Intn(4)]
	}
	inst := s.slots[s.active]
	ctx, cancel := s.clock.withDeadline(60 * time.Second)
	defer cancel()
	hook := s.armHooks(0.1, cancel)
	resp, err := s.request(inst, "config-write", ctx, logical.UpdateOperation, "config", data)
	s.disarm()
	shown := map[string]interface{}{}
	for k, v := range data {
		shown[k] = v
	}
	if tok != "" {
		shown["login_token"] = s.model.name(tok)
	}
	fields, _ := json.Marshal(shown)
	s.logf("config write on node %d %s%s -> %s", inst.slot, fields, hook, outcome(resp, err))
	if tok != "" && err == nil && !resp.IsError() {
		s.model.mu.Lock()
		if s.model.operator == tok {
			s.model.operator = ""
		}
		s.model.mu.Unlock()
	}
}

// operator reacts to a lost or expired token as the README tells them to, else tunes settings.
func (s *sim) operator() {
	cfg := s.rawConfig()
	s.model.mu.Lock()
	dead := !s.model.aliveLocked(fmt.Sprint(cfg["login_token"])) || s.model.operator != ""
	s.model.mu.Unlock()
	s.configWrite(dead || s.rng.Intn(3) == 0)
}

func (s *sim) rotateRoot() { s.rotateRootWith(0.5) }

func (s *sim) rotateRootWith(hookP float64) {
	inst := s.slots[s.active]
	ctx, cancel := s.clock.withDeadline(60 * time.Second) // the CLI's timeout
	defer cancel()
	s.manual[cfgString(s.rawConfig(), "login_token")] = true
	hook := s.armHooks(hookP, cancel)
	resp, err := s.request(inst, "rotate-root", ctx, logical.UpdateOperation, "rotate-root", nil)
	s.disarm()
	s.logf("rotate-root on node %d%s -> %s", inst.slot, hook, outcome(resp, err))
}

func (s *sim) restartActive() { s.restartSlot(s.active) }

func (s *sim) restart() {
	slot := s.active
	if s.rng.Intn(3) == 0 {
		slot = s.rng.Intn(len(s.slots))
	}
	s.restartSlot(slot)
}

func (s *sim) restartSlot(slot int) {
	s.kill(s.slots[slot], true)
	s.slots[slot] = s.newInstance(slot)
	s.logf("plugin restart on node %d (active %v)", slot, slot == s.active)
}

// stepDown moves the active role: the old active's mount is torn down and its writes fail from
// now on; the new active is a new backend instance on the same storage.
func (s *sim) stepDown(why string) {
	old := s.active
	s.kill(s.slots[old], false)
	s.slots[old] = s.newInstance(old)
	next := (old + 1 + s.rng.Intn(len(s.slots)-1)) % len(s.slots)
	s.kill(s.slots[next], true) // its standby mount is replaced by a fresh active one
	s.slots[next] = s.newInstance(next)
	s.active = next
	s.logf("step-down (%s): node %d -> node %d", why, old, next)
}

// stepDownLate moves the active role while the old active's request runs on, still writing.
func (s *sim) stepDownLate() {
	old := s.active
	s.killLate(s.slots[old])
	s.slots[old] = s.newInstance(old)
	next := (old + 1 + s.rng.Intn(len(s.slots)-1)) % len(s.slots)
	s.kill(s.slots[next], true)
	s.slots[next] = s.newInstance(next)
	s.active = next
	s.logf("step-down (not yet noticed by the old active): node %d -> node %d", old, next)
}

func (s *sim) storageFaults() {
	verb := []string{"Get", "Put", "Delete", "List"}[s.rng.Intn(4)]
	prefix := []string{"", "config", "wal/"}[s.rng.Intn(3)]
	switch r := s.rng.Intn(10); {
	case r < 5:
		n := 1 + s.rng.Intn(3)
		s.store.addFault(&storageFault{verb: verb, prefix: prefix, n: n})
		s.logf("storage: the next %d %s calls under %q fail", n, verb, prefix)
	case r < 7:
		s.store.addFault(&storageFault{verb: verb, prefix: prefix, lasting: true})
		s.logf("storage: every %s under %q fails until cleared", verb, prefix)
	default:
		s.store.clearFaults()
		s.logf("storage: healthy again")
	}
}

func (s *sim) inabitFaults() {
	s.model.mu.Lock()
	defer s.model.mu.Unlock()
	if s.rng.Intn(4) == 0 {
		s.model.outage = !s.model.outage
		s.logf("inabit: outage (every call 5xx) %v", s.model.outage)
		return
	}
	s.model.faultRate = []float64{0, 0.05, 0.15, 0.3, 0.6}[s.rng.Intn(5)]
	s.logf("inabit: fault rate %.2f", s.model.faultRate)
}
