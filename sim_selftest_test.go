package inabit

import (
	"encoding/json"
	"strings"
	"testing"
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
			rewrite(s, func(cfg map[string]interface{}) { cfg["last_rotation_error"] = "LOGIN TOKEN LOST: planted" })
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
			rewrite(s, func(cfg map[string]interface{}) { cfg["last_rotation_error"] = "LOGIN TOKEN LOST: planted" })
			s.check()
			rewrite(s, func(cfg map[string]interface{}) { cfg["last_rotation_error"] = "all is well" })
		}},
		{"c", func(s *sim) {
			tok := cfgString(s.rawConfig(), "login_token")
			s.model.mu.Lock()
			s.model.rejectedTo[tok] = map[int]bool{s.slots[s.active].id: true}
			s.model.mu.Unlock()
			s.onRefresh(s.slots[s.active].id, tok, false) // the node refreshes it anyway
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
