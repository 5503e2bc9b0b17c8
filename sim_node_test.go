package inabit

// The simulated cluster: nodes (backend instances) on one storage (requests: sim_request_test.go).

import (
	"context"
	"math/rand"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
)

// simLog is a node's log, read incrementally by the leak check.
type simLog struct {
	mu  sync.Mutex
	buf []byte
}

func (l *simLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf = append(l.buf, p...)
	return len(p), nil
}

func (l *simLog) since(off int) (string, int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.buf[off:]), len(l.buf)
}

// simInstance is one backend instance: a node's mount between two restarts.
type simInstance struct {
	id, slot int
	b        *backend
	logger   hclog.Logger
	view     *storeView
	logs     *simLog
	logOff   int
	events   *logical.MockEventSender
	eventOff int
	dead     bool
	stepped  bool // writes refused; guarded by simStore.mu
	crashed  bool // every storage and inabit call refused; guarded by simStore.mu
	// monoOff is this process's monotonic clock at the simulation's start: monotonic clocks never
	// step, but two processes' clocks differ by a constant.
	monoOff time.Duration
}

type simViolation struct {
	step     int
	inv, msg string
}

type simCounters struct {
	steps, rotations, lost, unknown, storageFaults, inabitFaults, hooks, waived int
}

type sim struct {
	seed     int64
	rng      *rand.Rand
	clock    *vclock
	store    *simStore
	model    *simInabit
	slots    []*simInstance
	active   int
	nextID   int
	insts    []*simInstance
	graceOK  bool // the code under test has refresh_grace_period
	reqs     []*simReq
	schedule []string
	texts    []string // errors, warnings and config reads of this step, for the leak check
	step     int
	fail     *simViolation
	st       simCounters
	uuids    map[string]string
	lostFor  string          // the stored token storage last recorded as LOST
	manual   map[string]bool // stored login tokens an operator asked to rotate
	cfgCache map[string]interface{}
	cfgVer   int
	notesMu  sync.Mutex
	notes    []string
	wasLost  bool
	wasUnkn  bool
	// skews are the nodes' wall clocks: node i reads the true (virtual) time plus skews[i]. They
	// are atomic because a shared fetch left running reads its node's clock off this goroutine.
	skews []*atomic.Int64
	// maxSkewSpread is the widest gap between any two wall clocks seen so far (steps included):
	// how far a status stamp written on one clock can be off for another.
	maxSkewSpread time.Duration
	// lagInvalidations: standbys learn of a change only after the next step (Vault's
	// invalidations are asynchronous); lagged holds those not delivered yet.
	lagInvalidations bool
	lagged           []simLagged
	// calmNow (the self-test only) makes calm judge the mount at once.
	calmNow bool
	// selfInvalidate: Vault also invalidates the node that wrote (every node sees every change).
	selfInvalidate bool
	// storedTok and storedSince: the stored login token, and the true time it was first stored.
	storedTok   string
	storedSince time.Time
}

type simLagged struct {
	inst *simInstance
	key  string
	step int
}

type simAccessMint struct {
	login   string
	instID  int
	current bool
	exp     time.Time
}

func newSim(seed int64) *sim {
	simGoroutine.Store(goroutineID())
	rng := rand.New(rand.NewSource(seed))
	clock := &vclock{t: simEpoch}
	s := &sim{seed: seed, rng: rng, clock: clock, store: newSimStore(), manual: map[string]bool{}, uuids: map[string]string{}}
	s.store.clock = clock
	s.model = newSimInabit(clock, rand.New(rand.NewSource(seed*7919+1)))
	s.model.grace = s.grace
	s.model.onRefresh = s.onRefresh
	s.model.onAccess = s.onAccess
	s.model.glitchOK = func() bool { return len(s.reqs) > 0 && s.reqs[len(s.reqs)-1].label == "token-read" }
	s.model.faultRate = []float64{0, 0.05, 0.15, 0.3}[rng.Intn(4)]
	s.model.loginLife = []time.Duration{6 * time.Hour, 48 * time.Hour, 30 * 24 * time.Hour}[rng.Intn(3)]
	s.store.onWrite = s.invalidateOthers
	s.store.note = s.note
	s.model.note = s.note
	s.selfInvalidate = rng.Intn(3) == 0
	s.lagInvalidations = rng.Intn(3) == 0
	for i, n := 0, 2+rng.Intn(2); i < n; i++ {
		s.skews = append(s.skews, new(atomic.Int64))
		s.slots = append(s.slots, s.newInstance(i))
	}
	for _, p := range s.slots[0].b.Paths {
		if p.Pattern == "config" && p.Fields["refresh_grace_period"] != nil {
			s.graceOK = true
		}
	}
	return s
}

// simEpoch is where every simulation's virtual clock starts.
var simEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func (s *sim) newInstance(slot int) *simInstance {
	s.nextID++
	inst := &simInstance{id: s.nextID, slot: slot, logs: &simLog{}, events: logical.NewMockEventSender()}
	inst.view = &storeView{s: s.store, inst: inst}
	conf := logical.TestBackendConfig()
	inst.logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Trace, Output: inst.logs})
	conf.Logger = inst.logger
	conf.StorageView = inst.view
	conf.EventsSender = inst.events
	raw, err := Factory(context.Background(), conf)
	if err != nil {
		panic(err)
	}
	b := raw.(*backend)
	// Each node's wall clock is the true time plus its skew, which the simulation sets and steps;
	// its monotonic clock never steps, and its waits are on the virtual clock. inabit's clock is
	// the true time.
	skew := s.skews[slot]
	inst.monoOff = time.Duration(s.rng.Int63n(int64(1000 * time.Hour)))
	b.now = func() time.Time { return s.clock.now().Add(time.Duration(skew.Load())) }
	b.mono = func() time.Duration { return s.clock.now().Sub(simEpoch) + inst.monoOff }
	b.sleep = s.clock.sleep
	b.newAPI = apiOver(&simTransport{m: s.model, instID: inst.id, inst: inst}, inabitapi.WithoutRetryWait())
	inst.b = b
	s.insts = append(s.insts, inst)
	return inst
}

// kill tears an instance down as Vault does on step-down or seal: Clean runs, and a request still
// running there can no longer write. With crash, the plugin process is gone (a restart): nothing
// it still does reaches storage or inabit.
func (s *sim) kill(inst *simInstance, crash bool) {
	s.store.mu.Lock()
	inst.stepped = true
	inst.crashed = crash
	s.store.mu.Unlock()
	if crash {
		s.model.mu.Lock()
		s.model.crashed[inst.id] = true
		s.model.mu.Unlock()
	}
	inst.dead = true
	for _, r := range s.reqs {
		if r.inst == inst {
			// Its request is paused in a hook on this goroutine, so a Clean that waits for the
			// rotation to finish would block the simulation. Vault tears down concurrently:
			// Clean coming just after the request is one of the interleavings it allows.
			r.cleanAfter = true
			return
		}
	}
	inst.b.Cleanup(context.Background())
}

// killLate deposes inst while its request runs, as an HA backend whose lock loss the node has not
// noticed yet: its writes still land until the request returns; then it steps down.
func (s *sim) killLate(inst *simInstance) {
	for _, r := range s.reqs {
		if r.inst == inst {
			inst.dead = true
			r.cleanAfter, r.stepAfter = true, true
			return
		}
	}
	s.kill(inst, false)
}

// deliverLagged hands standbys the invalidations Vault had not delivered yet (all of them when
// all is set, else those due by this step).
func (s *sim) deliverLagged(all bool) {
	kept := s.lagged[:0]
	for _, l := range s.lagged {
		if !all && l.step > s.step {
			kept = append(kept, l)
			continue
		}
		if !l.inst.dead {
			l.inst.b.InvalidateKey(context.Background(), l.key)
		}
	}
	s.lagged = kept
}

// lagging says Vault has not yet told inst of a change.
func (s *sim) lagging(inst *simInstance) bool {
	for _, l := range s.lagged {
		if l.inst == inst {
			return true
		}
	}
	return false
}

// invalidateOthers is Vault telling the other nodes that a key changed.
func (s *sim) invalidateOthers(from *simInstance, key string) {
	if key == "config" {
		s.noteStored()
	}
	for slot, inst := range s.slots {
		if (inst != from || s.selfInvalidate) && !inst.dead {
			if s.lagInvalidations && slot != s.active {
				// Vault's invalidation reaches this standby only after the next step.
				s.lagged = append(s.lagged, simLagged{inst: inst, key: key, step: s.step + 1})
				continue
			}
			inst.b.InvalidateKey(context.Background(), key)
		}
	}
}

// noteStored records when the stored login token changed, on the true clock.
func (s *sim) noteStored() {
	if tok := cfgString(s.rawConfig(), "login_token"); tok != s.storedTok {
		s.storedTok, s.storedSince = tok, s.clock.now()
	}
}

// skew is node slot's wall-clock error.
func (s *sim) skew(slot int) time.Duration { return time.Duration(s.skews[slot].Load()) }

// nodeNow is node slot's wall clock.
func (s *sim) nodeNow(slot int) time.Time { return s.clock.now().Add(s.skew(slot)) }

// setSkew sets node slot's wall-clock error and widens maxSkewSpread.
func (s *sim) setSkew(slot int, d time.Duration) {
	for i := range s.skews { // the node's own earlier clock included: its stamps are still stored
		if gap := d - s.skew(i); gap > s.maxSkewSpread {
			s.maxSkewSpread = gap
		} else if -gap > s.maxSkewSpread {
			s.maxSkewSpread = -gap
		}
	}
	s.skews[slot].Store(int64(d))
}

// heldBy is the rotated login token inst holds in memory because storage refused it; "" if none.
func heldBy(inst *simInstance) string {
	if inst == nil || inst.dead {
		return ""
	}
	cfg, _, ok := inst.b.login.held()
	if !ok {
		return ""
	}
	return cfg.LoginToken
}
