package inabit

// Time in the simulation: the contract's rotation schedule, periodic ticks and clock jumps.

import (
	"fmt"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
)

// grace is the stored refresh_grace_period: the contract's default 10m when the code under test has
// no such field. inabit's late applies stay within half of it (see RoundTrip).
func (s *sim) grace() time.Duration {
	return cfgDuration(s.rawConfig(), "refresh_grace_period", 10*time.Minute)
}

// dueAt is the contract's schedule: min(born + rotation_period, exp - margin).
func dueAt(tok string, rp time.Duration) time.Time {
	iat, exp := simClaims(tok)
	if iat.IsZero() || exp.IsZero() {
		return time.Time{}
	}
	margin := min(24*time.Hour, exp.Sub(iat)/4)
	due := exp.Add(-margin)
	if rp > 0 && iat.Add(rp).Before(due) {
		due = iat.Add(rp)
	}
	return due
}

// dueAndHealthy says why a fault-free tick now must refresh, or "" if it need not.
func (s *sim) dueAndHealthy() string {
	cfg := s.rawConfig()
	if cfg == nil || cfg["disable_automated_rotation"] == true || cfgString(cfg, "last_rotation_error") != "" ||
		cfg["rotation_failures"] != nil && cfg["rotation_failures"] != float64(0) || len(s.store.rawKeys("wal/")) > 0 {
		return ""
	}
	tok := cfgString(cfg, "login_token")
	s.model.mu.Lock()
	alive := s.model.aliveLocked(tok)
	s.model.mu.Unlock()
	due := dueAt(tok, cfgDuration(cfg, "rotation_period", 0))
	if !alive || due.IsZero() || s.clock.now().Before(due.Add(time.Second)) {
		return ""
	}
	_, exp := simClaims(tok)
	return fmt.Sprintf("%s due %s, expires %s", s.model.name(tok), due.Format("01-02 15:04:05"), exp.Format("01-02 15:04:05"))
}

// nextInteresting is the earliest future time at which a tick may have work to do.
func (s *sim) nextInteresting() (time.Time, string) {
	now := s.clock.now()
	var best time.Time
	why := ""
	consider := func(t time.Time, w string) {
		if t.After(now) && (best.IsZero() || t.Before(best)) {
			best, why = t, w
		}
	}
	cfg := s.rawConfig()
	if cfg == nil {
		return best, why
	}
	consider(dueAt(cfgString(cfg, "login_token"), cfgDuration(cfg, "rotation_period", 0)).Add(time.Second), "rotation due")
	if f, ok := cfg["rotation_failures"].(float64); ok && f > 0 {
		at, _ := time.Parse(time.RFC3339Nano, cfgString(cfg, "last_rotation_error_at"))
		consider(at.Add(min(time.Hour, time.Minute<<min(int(f)-1, 6))+time.Second), "failure backoff over")
	}
	for _, key := range s.store.rawKeys("wal/") {
		if _, _, started := s.rawWAL(key); !started.IsZero() {
			consider(started.Add(s.grace()+time.Second), "WAL entry past its grace period")
			consider(started.Add(10*time.Minute+time.Second), "WAL entry old enough for Vault's rollback")
		}
	}
	return best, why
}

// tick is the rollback manager's periodic call on the active node (90 s deadline), then Vault's
// WAL rollback, judged by the virtual age of each entry.
func (s *sim) tick(hookP float64) {
	inst := s.slots[s.active]
	ctx, cancel := s.clock.withDeadline(90 * time.Second)
	defer cancel()
	due := s.dueAndHealthy()
	faultFree := !s.store.faultsActive()
	s.model.mu.Lock()
	faults, refreshes := s.model.faults, s.model.refreshes
	faultFree = faultFree && !s.model.outage
	s.model.mu.Unlock()
	hook := s.armHooks(hookP, cancel)
	resp, err := s.request(inst, "tick", ctx, logical.RollbackOperation, "", nil)
	s.disarm()
	s.logf("tick on node %d%s -> %s", inst.slot, hook, outcome(resp, err))
	s.model.mu.Lock()
	faultFree = faultFree && s.model.faults == faults
	sent := s.model.refreshes > refreshes
	s.model.mu.Unlock()
	if due != "" && hook == "" && faultFree && !sent {
		s.violate("e", "the stored login token is live, healthy and due (%s), a fault-free tick ran, and no refresh was sent", due)
	}
	if inst.dead {
		return
	}
	minAge := inst.b.WALRollbackMinAge
	if minAge == 0 {
		minAge = 10 * time.Minute
	}
	for _, key := range s.store.rawKeys("wal/") {
		kind, data, started := s.rawWAL(key)
		if started.IsZero() || s.clock.now().Sub(started) < minAge {
			continue
		}
		resp, err := s.do(inst, "wal-rollback", func() (*logical.Response, error) {
			err := inst.b.WALRollback(ctx, &logical.Request{Operation: logical.RollbackOperation, Storage: inst.view}, kind, data)
			if err == nil {
				err = inst.view.Delete(ctx, key)
			}
			return nil, err
		})
		s.logf("  Vault's WAL rollback of an entry started %s -> %s", started.Format("01-02 15:04:05"), outcome(resp, err))
	}
}

// jump moves the clock forward by seconds to days. Vault ticks every minute meanwhile; ticks that
// cannot matter are skipped, and the ones that can (a rotation falls due, a WAL entry's grace
// period or a failure's backoff ends) are run at their time.
func (s *sim) jump() {
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
	target := s.clock.now().Add(d)
	s.logf("clock +%s", d)
	for i := 0; i < 12 && s.fail == nil; i++ {
		at, why := s.nextInteresting()
		if at.IsZero() || !at.Before(target) {
			break
		}
		s.clock.advance(at.Sub(s.clock.now()))
		s.model.settle()
		s.logf("  (%s)", why)
		s.tick(0)
		if s.fail == nil {
			s.check()
		}
	}
	if s.fail != nil {
		return
	}
	s.clock.advance(target.Sub(s.clock.now()))
	s.model.settle()
	if s.rng.Intn(10) < 7 {
		s.tick(0)
	}
}
