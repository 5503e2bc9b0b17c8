package inabit

// A tick waits for its turn without the mount lock and plans again under it: whatever happened
// on the mount meanwhile, its second look sends nothing twice and declares nothing lost.

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/rotation"
)

// duringTheWait runs f while envs[0]'s tick waits for its turn (the mount lock free).
func duringTheWait(t *testing.T, f func(env *testEnv)) (envs []*testEnv, mock *mockinabit.Server) {
	envs, mock, clock := herdOnOneInabit(t, rotation.SpreadMinMounts, map[string]interface{}{"rotation_schedule": "0 3 * * *"})
	p := usePacer(t, clock, false).get(envs[0].srv.URL)
	toThreeAM(clock)
	p.Reserve(clock.mono(), slotWait)
	calls := 0
	pacerSleep = func(ctx context.Context, d time.Duration) error {
		calls++
		f(envs[0])
		return nil
	}
	envs[0].tick(t)
	if calls != 1 {
		t.Fatalf("setup: the tick waited %d times", calls)
	}
	return envs, mock
}

// rotate-root meets a lost answer (inabit applied it) while the tick waits: the tick's second look
// finds the WAL entry and sends nothing; nothing is declared lost before the settle wait.
func TestATicksSecondLookSettlesRotateRootsLostAnswerInsteadOfRefreshing(t *testing.T) {
	envs, mock := duringTheWait(t, func(env *testEnv) {
		env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDropAfterApply, Times: 1})
		env.request(logical.UpdateOperation, "rotate-root", nil)
	})
	cfg := storedConfig(t, envs[0])
	if n := mock.Calls(mockinabit.OpRefresh); n != 1 || cfg.LoginTokenLost || cfg.OutcomeCheckAt.IsZero() {
		t.Fatalf("%d refreshes (want 1), lost %v, outcome check %v", n, cfg.LoginTokenLost, cfg.OutcomeCheckAt)
	}
}

// A read saw inabit reject the token (a glitch) while the tick waited, more than ConfirmAfter
// before the second look: the probe before the refresh finds it alive and the rotation goes on.
func TestAGlitchRejectionDuringATicksWaitIsNotDeclaredLost(t *testing.T) {
	envs, mock := duringTheWait(t, func(env *testEnv) {
		cfg := storedConfig(t, env)
		env.b.login.noteRejected(cfg.LoginToken, env.b.mono())
		env.clock.advance(10 * time.Second)
	})
	cfg := storedConfig(t, envs[0])
	if n := mock.Calls(mockinabit.OpRefresh); n != 1 || cfg.LoginTokenLost || cfg.LastRotatedAt.IsZero() {
		t.Fatalf("%d refreshes, lost %v, rotated %v", n, cfg.LoginTokenLost, cfg.LastRotatedAt)
	}
}

// The operator writes a new token while the tick waits: the tick's second look plans for it (not
// due) and sends nothing with either token.
func TestATicksSecondLookSendsNothingForATokenWrittenDuringItsWait(t *testing.T) {
	envs, mock := duringTheWait(t, func(env *testEnv) {
		tok := env.mock.CreateUsers(1)[0].LoginToken
		env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"login_token": tok})
	})
	if n := mock.Calls(mockinabit.OpRefresh); n != 0 || storedConfig(t, envs[0]).LoginTokenLost {
		t.Fatalf("%d refreshes after a new token was written during the wait", n)
	}
}

// DELETE config (force) while the tick waits: nothing is sent.
func TestATicksSecondLookSendsNothingAfterTheConfigWasDeleted(t *testing.T) {
	_, mock := duringTheWait(t, func(env *testEnv) {
		env.requestOK(logical.DeleteOperation, "config", map[string]interface{}{"force": true})
	})
	if n := mock.Calls(mockinabit.OpRefresh); n != 0 {
		t.Fatalf("%d refreshes after the config was deleted during the wait", n)
	}
}

// rotate-root's new token is refused by storage (held in memory) while the tick waits: the
// tick's second look tries to save it, fails, and sends no refresh with the dead stored token;
// once storage works the next tick saves it.
func TestATicksSecondLookSavesAHeldTokenRatherThanRefreshingTheDeadOne(t *testing.T) {
	envs, mock := duringTheWait(t, func(env *testEnv) {
		env.storage.failPutsAfter(configStorageKey, 1)
		env.request(logical.UpdateOperation, "rotate-root", nil)
	})
	if _, _, held := envs[0].b.login.held(); !held || mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatalf("held %v, %d refreshes (want 1)", held, mock.Calls(mockinabit.OpRefresh))
	}
	envs[0].storage.failPutsTo(configStorageKey, false)
	envs[0].tick(t)
	cfg := storedConfig(t, envs[0])
	if _, _, held := envs[0].b.login.held(); held || !mock.LoginTokenValid(cfg.LoginToken) || mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatalf("after storage recovered: held %v, stored token valid %v, %d refreshes", held, mock.LoginTokenValid(cfg.LoginToken), mock.Calls(mockinabit.OpRefresh))
	}
}
