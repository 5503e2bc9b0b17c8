package inabit

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// TestSimulationCatchesPlantedViolations proves the checkers can fail: each case plants one
// violation in a freshly set-up simulation and expects exactly that invariant to fire.
func TestSimulationCatchesPlantedViolations(t *testing.T) {
	rewrite := func(s *sim, edit func(cfg map[string]interface{})) {
		cfg := map[string]interface{}{}
		for k, v := range s.rawConfig() {
			cfg[k] = v
		}
		edit(cfg)
		raw, _ := json.Marshal(cfg)
		s.store.mu.Lock()
		s.store.data["config"] = raw
		s.store.ver++
		s.store.mu.Unlock()
	}
	cases := []struct {
		inv   string
		plant func(s *sim)
	}{
		{"d", func(s *sim) {
			s.slots[s.active].logger.Info("oops", "token", s.model.mintedTokens()[0])
		}},
		{"d", func(s *sim) { s.texts = append(s.texts, "error: "+s.model.mintedTokens()[0]) }},
		{"b", func(s *sim) {
			rewrite(s, func(cfg map[string]interface{}) { cfg["login_token_lost"] = true })
		}},
		{"a", func(s *sim) {
			s.model.mu.Lock()
			s.model.applyLocked(s.model.live) // inabit refreshed the token and told nobody
			s.model.mu.Unlock()
		}},
		{"a-sticky", func(s *sim) {
			s.model.mu.Lock()
			s.model.killedBy[s.model.live] = "support"
			s.model.live = s.model.mintLocked("login", s.model.loginLife)
			s.model.mu.Unlock()
			rewrite(s, func(cfg map[string]interface{}) { cfg["login_token_lost"] = true })
			s.check()
			rewrite(s, func(cfg map[string]interface{}) { delete(cfg, "login_token_lost") })
		}},
		{"c", func(s *sim) {
			tok := cfgString(s.rawConfig(), "login_token")
			s.model.mu.Lock()
			s.model.rejectedTo[tok] = map[int]bool{s.slots[s.active].id: true}
			s.model.mu.Unlock()
			s.onRefresh(s.slots[s.active].id, tok, false) // the node refreshes it anyway
		}},
		{"c", func(s *sim) {
			tok, id := cfgString(s.rawConfig(), "login_token"), s.slots[s.active].id
			s.model.mu.Lock()
			s.model.markLocked(s.model.proofSeq, tok, id)
			s.model.markLocked(s.model.rejectSeq, tok, id) // a rejection (a glitch) since the proof of life
			s.model.mu.Unlock()
			s.onRefresh(id, tok, false) // the node refreshes without asking again
		}},
		{"h", func(s *sim) {
			s.model.revoke() // the stored token dies; the status still says healthy
			s.calmNow = true
			s.calm()
		}},
		{"h", func(s *sim) {
			rewrite(s, func(cfg map[string]interface{}) { cfg["outcome_check_at"] = "2030-01-01T00:10:00Z" }) // pending, nothing behind it
			s.calmNow = true
			s.calm()
		}},
		{"i", func(s *sim) {
			tok := s.model.revoke()
			s.model.mu.Lock()
			s.model.rejectedAt[tok] = map[int]time.Time{s.slots[s.active].id: s.clock.now()} // inabit told the active node
			s.model.mu.Unlock()
			s.clock.advance(time.Minute)
			s.checkTickNoticed(s.slots[s.active], s.clock.now()) // a fault-free tick ran; the status is healthy
		}},
		{"j", func(s *sim) {
			s.model.mu.Lock()
			stale := s.model.mintLocked("login", time.Hour) // a login token Vault never had
			access := s.model.mintLocked("access", s.model.accessLife)
			s.model.accessMints[access] = simAccessMint{login: stale, instID: s.slots[s.active].id, exp: s.clock.now().Add(s.model.accessLife)}
			s.model.mu.Unlock()
			s.checkServed(s.slots[s.active], &logical.Response{Data: map[string]interface{}{"access_token": access}})
		}},
		{"j", func(s *sim) {
			s.model.mu.Lock()
			access := s.model.mintLocked("access", s.model.accessLife)
			s.model.accessMints[access] = simAccessMint{login: s.model.live, instID: s.slots[s.active].id, current: true, exp: s.clock.now().Add(s.model.accessLife)}
			s.model.mu.Unlock()
			resp := &logical.Response{Data: map[string]interface{}{"access_token": access}, Secret: &logical.Secret{}}
			resp.Secret.TTL = s.model.accessLife + time.Minute // a lease that outlives the token
			s.checkServed(s.slots[s.active], resp)
		}},
		{"k", func(s *sim) {
			before := s.readWorldNow()
			s.checkRead(s.slots[s.active], before, nil, errors.New("planted: the read failed")) // with everything healthy
		}},
	}
	for _, tc := range cases {
		s := newSim(1)
		s.setup()
		s.check()
		if s.fail != nil {
			t.Fatalf("clean setup already violates (%s): %s", s.fail.inv, s.fail.msg)
		}
		tc.plant(s)
		if s.fail == nil {
			s.check()
		}
		if s.fail == nil || s.fail.inv != tc.inv {
			t.Errorf("planted a violation of (%s); got %+v\n%s", tc.inv, s.fail, strings.Join(s.schedule, "\n"))
		}
		for _, inst := range s.slots {
			s.kill(inst, false)
		}
	}
}

// TestSimulationReplays: a seed prints the same schedule every time, so -seed reproduces it.
func TestSimulationReplays(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		a, b := runSim(seed, 35), runSim(seed, 35)
		if x, y := strings.Join(a.schedule, "\n"), strings.Join(b.schedule, "\n"); x != y {
			t.Fatalf("seed %d ran differently twice:\n%s\n--- versus ---\n%s", seed, x, y)
		}
	}
}
