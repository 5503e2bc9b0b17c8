package inabit

// Tests of wal.go: when a rotation's WAL entry is settled, by which node, and what that concludes.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// A refresh inabit applies after our client gave up is "outcome unknown": no probe and no new
// refresh until refresh_grace_period has passed, then LOGIN TOKEN LOST (issue 8 defect 3: the
// probe raced a refresh inabit was still applying).
func TestRefreshAppliedAfterTimeoutIsUnknownUntilGraceThenLost(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	orig := env.mock.LoginToken()
	env.mock.ResetCalls()
	// We give up after 1s; inabit applies the refresh at 2s.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 2 * time.Second, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	s := rotationStatus(t, env)
	if !strings.Contains(s, "outcome unknown") || !strings.Contains(s, "checked again at") {
		t.Fatalf("status right after a timed-out refresh = %q, want \"outcome unknown … checked again at\"", s)
	}
	if n := walCount(t, env); n != 1 {
		t.Fatalf("WAL entries = %d, want 1 (the outcome unknown)", n)
	}
	if got := env.mock.Calls(mockinabit.OpAccessToken); got != 0 {
		t.Fatalf("%d probes sent while inabit may still be applying the refresh", got)
	}

	if !env.mock.WaitIdle(10 * time.Second) {
		t.Fatal("the delayed refresh never finished")
	}
	if env.mock.LoginTokenValid(orig) {
		t.Fatal("setup: inabit did not apply the delayed refresh")
	}
	// Before the grace period ends, nothing is sent.
	_, err = env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if err == nil {
		t.Fatal("a second rotate-root inside the grace period succeeded")
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d, want 1 (no new refresh while the outcome unknown)", got)
	}

	env.clock.advance(pastGrace)
	env.tick(t)
	if s := rotationStatus(t, env); !strings.HasPrefix(s, "LOGIN TOKEN LOST") {
		t.Fatalf("status after the grace period = %q, want LOGIN TOKEN LOST", s)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
}

// A refresh inabit never applied is settled, with a clean status and a live stored token, only
// after refresh_grace_period (issue 8 defect 3).
func TestRefreshNeverAppliedIsSettledCleanOnlyAfterGrace(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	env.mock.ResetCalls()
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	t.Logf("rotate-root: %v", err)
	if !env.mock.WaitIdle(10 * time.Second) {
		t.Fatal("the swallowed refresh is still held")
	}
	s := rotationStatus(t, env)
	if n := walCount(t, env); n != 1 || !strings.Contains(s, "outcome unknown") {
		t.Fatalf("after a swallowed refresh: WAL entries = %d, status = %q; want 1 and \"outcome unknown\"", n, s)
	}
	env.clock.advance(time.Minute)
	env.tick(t)
	if r, a := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken); r != 1 || a != 0 {
		t.Fatalf("a tick inside the grace period sent %d refreshes and %d probes, want 1 and 0", r, a)
	}

	env.clock.advance(pastGrace)
	env.tick(t)
	if s := rotationStatus(t, env); s != "" {
		t.Fatalf("status after the grace period = %q, want clean", s)
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("WAL entries = %d after the grace period, want 0", n)
	}
	if !env.mock.LoginTokenValid(storedToken(t, env)) {
		t.Fatal("stored token is dead")
	}
}

// Another node's young WAL entry blocks rotate-root; neither it nor a tick calls inabit or deletes
// the entry (issue 8 defect 7: young WALs of another node were settled).
func TestYoungWALOfAnotherNodeBlocksRotationAndIsKept(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	putWAL(t, env, storedToken(t, env), env.clock.now().Add(-30*time.Second))
	env.mock.ResetCalls()

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if r, a := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken); r != 0 || a != 0 {
		t.Fatalf("rotate-root beside another node's 30s-old rotation sent %d refreshes and %d probes, want none (err %v)", r, a, err)
	}
	if err == nil {
		t.Fatal("rotate-root beside another node's rotation in flight succeeded")
	}
	env.tick(t)
	if n := walCount(t, env); n != 1 {
		t.Fatalf("a tick deleted another node's young WAL entry (%d left)", n)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 || env.mock.Calls(mockinabit.OpAccessToken) != 0 {
		t.Fatal("a tick called inabit beside another node's rotation in flight")
	}
}

// walRollback on a performance standby calls no inabit and writes no status (issue 8 defect 10).
func TestWALRollbackOnPerformanceStandbyCallsNothingAndWritesNothing(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	putWAL(t, env, storedToken(t, env), env.clock.now().Add(-time.Hour))
	env.mock.IssueLoginToken() // whatever happened, a standby must not be the one to find out
	env.mock.ResetCalls()

	standby := newNode(t, env, func(c *logical.BackendConfig) {
		sv := logical.TestSystemView()
		sv.ReplicationStateVal = consts.ReplicationPerformanceStandby
		c.System = sv
	})
	ids, err := framework.ListWAL(context.Background(), env.storage)
	if err != nil || len(ids) != 1 {
		t.Fatalf("WAL: %v %v", ids, err)
	}
	entry, err := framework.GetWAL(context.Background(), env.storage, ids[0])
	if err != nil {
		t.Fatal(err)
	}
	err = standby.walRollback(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}, entry.Kind, entry.Data)
	t.Logf("walRollback on a performance standby: %v", err)
	if r, a := env.mock.Calls(mockinabit.OpRefresh), env.mock.Calls(mockinabit.OpAccessToken); r != 0 || a != 0 {
		t.Fatalf("walRollback on a performance standby called inabit (%d refreshes, %d probes)", r, a)
	}
	if s := storedConfig(t, env).LastRotationError; s != "" {
		t.Fatalf("walRollback on a performance standby wrote status %q", s)
	}
}

// TestRestartedNodeSettlesOldWALOnlyAfterGraceOnItsOwnClock restarts the plugin (a new backend
// from Factory on the same storage) and calls its walRollback directly, as Vault does for an old
// entry. Issue 8 defect 12: the crash-recovery test did not reach walRollback.
func TestRestartedNodeSettlesOldWALOnlyAfterGraceOnItsOwnClock(t *testing.T) {
	cases := []struct {
		name     string
		crash    func(env *testEnv)
		wantLost bool
	}{
		{"died before calling inabit", func(*testEnv) {}, false},
		{"died after inabit applied, before persist", func(env *testEnv) { env.mock.IssueLoginToken() }, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, nil)
			id := putWAL(t, env, storedToken(t, env), env.clock.now().Add(-time.Hour))
			tc.crash(env)
			env.b.Cleanup(context.Background()) // the old plugin process is gone
			env.b = newNode(t, env, nil)
			env.mock.ResetCalls()

			entry, err := framework.GetWAL(context.Background(), env.storage, id)
			if err != nil || entry == nil {
				t.Fatalf("WAL entry: %v %v", entry, err)
			}
			req := &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}
			// However old its stamp, the restarted node has just seen the entry: it waits out the
			// grace on its own clock first (a skewed writer's stamp proves nothing).
			if err := env.b.walRollback(context.Background(), req, entry.Kind, entry.Data); err == nil {
				t.Fatal("walRollback settled an entry this node saw for the first time")
			}
			if got := env.mock.Calls(mockinabit.OpAccessToken); got != 0 {
				t.Fatalf("%d probes of an entry inside its grace on this node's clock", got)
			}
			env.clock.advance(pastGrace)
			if err := env.b.walRollback(context.Background(), req, entry.Kind, entry.Data); err != nil {
				t.Fatalf("walRollback: %v", err)
			}
			if env.mock.Calls(mockinabit.OpAccessToken) == 0 {
				t.Fatal("walRollback did not ask inabit about the old token")
			}
			// Vault deletes an entry whose rollback succeeded.
			if err := framework.DeleteWAL(context.Background(), env.storage, id); err != nil {
				t.Fatal(err)
			}
			cfg := env.readConfig(t)
			s, _ := cfg["last_rotation_error"].(string)
			if tc.wantLost {
				if !strings.HasPrefix(s, "LOGIN TOKEN LOST") || cfg["login_token_lost"] != true {
					t.Fatalf("after recovery: status %q, login_token_lost %v; want LOGIN TOKEN LOST and true", s, cfg["login_token_lost"])
				}
			} else {
				if s != "" || cfg["login_token_lost"] == true {
					t.Fatalf("healthy recovery: status %q, login_token_lost %v", s, cfg["login_token_lost"])
				}
				if !env.mock.LoginTokenValid(storedToken(t, env)) {
					t.Fatal("stored token is dead")
				}
			}
			if env.mock.Calls(mockinabit.OpRefresh) != 0 {
				t.Fatal("recovery sent a refresh")
			}
			env.tickOK(t)
		})
	}
}

// A node whose clock runs ahead by more than refresh_grace_period (>= 30s is allowed) does not
// settle another node's entry while that node's refresh is still being applied: the entry's age
// is not judged from the writer's StartedAt on the settling node's clock. Here node B's clock is
// 40s ahead; inabit applies A's refresh 3s after receiving it. (The review found B's probe saying
// "alive", the entry deleted and the status cleared; then inabit applied the refresh, the
// stepped-down A could not save the answer, and the cluster said healthy over a dead token.)
func TestNodeWithClockAheadNeverSettlesARefreshStillBeingApplied(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1, "refresh_grace_period": 30})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 3 * time.Second, Times: 1})

	_, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil) // A gives up after 1s
	if s := rotationStatus(t, env); !strings.Contains(s, "outcome unknown") {
		t.Fatalf("setup: rotate-root %v, status %q", err, s)
	}
	// A steps down; B, whose clock is 40s ahead of A's, becomes active and ticks at once.
	nodeB := newNode(t, env, nil)
	nodeB.now = func() time.Time { return env.clock.now().Add(40 * time.Second) }
	if _, err := nodeB.HandleRequest(context.Background(), &logical.Request{Operation: logical.RollbackOperation, Storage: env.storage}); err != nil {
		t.Logf("node B tick: %v", err)
	}
	settled := walCount(t, env) == 0
	if !env.mock.WaitIdle(10 * time.Second) {
		t.Fatal("the delayed refresh never finished")
	}
	stored := storedConfig(t, env)
	if settled && !env.mock.LoginTokenValid(stored.LoginToken) && !stored.LoginTokenLost && stored.LastRotationError == "" {
		t.Fatalf("node B (clock +40s, refresh_grace_period 30s) settled node A's entry ~1s after A's refresh timed out, "+
			"while inabit was still applying it: the stored token is now dead, the status is clean (%q), login_token_lost %v, no WAL entry left",
			stored.LastRotationError, stored.LoginTokenLost)
	}
}

// 15.4 (mutation settle-by-wall-clock): a forward wall-clock step on the node that sent a refresh
// does not let it settle that refresh while inabit may still apply it.
func TestForwardClockStepNeverSettlesOwnRefreshEarly(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"request_timeout": 1})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultHang, Times: 1})
	_, _ = env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	env.mock.WaitIdle(10 * time.Second)
	env.mock.ResetCalls()
	env.clock.step(3 * time.Hour)
	env.tick(t)
	if n, probes := walCount(t, env), env.mock.Calls(mockinabit.OpAccessToken); n != 1 || probes != 0 {
		t.Fatalf("after a forward clock step: WAL entries %d, probes %d; want 1 and 0 (the refresh may still be applied)", n, probes)
	}
	env.clock.advance(pastGrace)
	env.tick(t)
	if n := walCount(t, env); n != 0 {
		t.Fatalf("not settled once the grace passed on this node's clock: %d WAL entries", n)
	}
}

func TestCrashRecovery(t *testing.T) {
	cases := []struct {
		name string
		// crash leaves storage as a dead node would: a WAL entry, maybe a changed token.
		crash     func(t *testing.T, env *testEnv)
		wantLost  bool
		wantError string
	}{
		{"died before calling inabit", func(t *testing.T, env *testEnv) {}, false, ""},
		{"died after inabit applied, before persist", func(t *testing.T, env *testEnv) {
			env.mock.IssueLoginToken() // the refresh happened; its answer died with the node
		}, true, "LOGIN TOKEN LOST"},
		{"died after persist, before WAL delete", func(t *testing.T, env *testEnv) {
			cfg, _ := readConfig(context.Background(), env.storage)
			cfg.LoginToken = env.mock.IssueLoginToken()
			if err := putConfig(context.Background(), env.storage, cfg); err != nil {
				t.Fatal(err)
			}
		}, false, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, nil)
			cfg, _ := readConfig(context.Background(), env.storage)
			if _, err := framework.PutWAL(context.Background(), env.storage, walKindRotation,
				&rotationWAL{OldTokenSHA256: tokenHash(cfg.LoginToken), StartedAt: time.Now().Add(-time.Hour)}); err != nil {
				t.Fatal(err)
			}
			tc.crash(t, env)

			// A restarted plugin: new backend, same storage.
			env.b.Cleanup(context.Background())
			env.b.WALRollbackMinAge = time.Millisecond
			time.Sleep(1100 * time.Millisecond) // WAL CreatedAt has one-second resolution
			env.tick(t)                         // first sight of the entry on this node: it waits the grace
			env.clock.advance(11 * time.Minute)
			env.tick(t)

			if n := walCount(t, env); n != 0 {
				t.Fatalf("%d WAL entries left after recovery", n)
			}
			status := env.readConfig(t)
			msg := status["last_rotation_error"].(string)
			if tc.wantLost {
				if !strings.Contains(msg, tc.wantError) || !strings.Contains(msg, "write it to inabit/config") {
					t.Fatalf("lost token not reported clearly: %q", msg)
				}
				if ev := env.eventTypes(); len(ev) == 0 || ev[len(ev)-1] != eventRotateFail {
					t.Fatalf("events = %v", ev)
				}
				return
			}
			if msg != "" {
				t.Fatalf("healthy recovery recorded an error: %q", msg)
			}
			if !env.mock.LoginTokenValid(storedToken(t, env)) {
				t.Fatal("stored token is dead")
			}
			env.readToken(t)
		})
	}
}

// TestUnfinishedRefreshIsSettledOnlyAfterGraceOnThisNodesClock: an entry is settled (its old token
// probed) request_timeout + 2s + MaxRecordLatency + refresh_grace_period after this node first
// saw it, on its monotonic clock, whatever the writer's stamp says: under any skew or step, that
// never comes before inabit may have stopped applying the refresh.
func TestUnfinishedRefreshIsSettledOnlyAfterGraceOnThisNodesClock(t *testing.T) {
	const settleAfter = time.Second + 2*time.Second + 10*time.Second + 10*time.Minute
	cases := []struct {
		name      string
		stampAge  time.Duration
		killToken bool
	}{
		{"young stamp, refresh applied and answer lost", 9 * time.Minute, true},
		{"stale stamp, refresh never applied", 16 * time.Minute, false},
		{"stale stamp, refresh applied and answer lost", 16 * time.Minute, true},
		{"stamp a day in the future (writer's clock ahead)", -24 * time.Hour, true},
		{"stamp a year old (writer's clock behind)", 365 * 24 * time.Hour, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := newTestEnv(t, mockinabit.Options{})
			env.configure(t, map[string]interface{}{"request_timeout": 1})
			cfg, _ := readConfig(context.Background(), env.storage)
			if _, err := framework.PutWAL(context.Background(), env.storage, walKindRotation,
				&rotationWAL{OldTokenSHA256: tokenHash(cfg.LoginToken), StartedAt: env.clock.now().Add(-tc.stampAge)}); err != nil {
				t.Fatal(err)
			}
			if tc.killToken {
				env.mock.IssueLoginToken()
			}
			env.mock.ResetCalls()
			for _, step := range []time.Duration{0, settleAfter - 2*time.Second} {
				env.clock.advance(step)
				env.tick(t) // rotation is not due: only the WAL check can act
				if got, probes := walCount(t, env), env.mock.Calls(mockinabit.OpAccessToken); got != 1 || probes != 0 {
					t.Fatalf("%s after first sight: WAL entries = %d, probes = %d; want 1 and 0", step, got, probes)
				}
			}
			env.clock.advance(3 * time.Second)
			env.tick(t)
			if got := walCount(t, env); got != 0 {
				t.Fatalf("WAL entries = %d once the grace passed on this node's clock, want 0", got)
			}
			lost := strings.Contains(env.readConfig(t)["last_rotation_error"].(string), "LOGIN TOKEN LOST")
			if lost != tc.killToken {
				t.Fatalf("reported lost = %v, want %v", lost, tc.killToken)
			}
			if env.mock.Calls(mockinabit.OpRefresh) != 0 {
				t.Fatal("settling a WAL must not refresh")
			}
		})
	}
}
