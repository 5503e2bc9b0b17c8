package inabit

// Tests of rotation.go under faults around the refresh: a caller or a tick whose context ends,
// a reader holding the refresh back, a failed manual rotation, a proxy's page.

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// A rotate-root whose caller hangs up right after inabit answered still saves the new token,
// deletes its WAL entry and leaves a clean status (issue 8 defect 1: the new token was stranded
// in memory).
func TestRotateRootWhoseCallerHangsUpAfterRefreshSavesTheNewToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	old := env.mock.LoginToken()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The client hangs up right after inabit answered: at the first save of the new token.
	vs := &vaultStorage{Storage: env.storage, onConfigPut: cancel}
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.UpdateOperation, Path: "rotate-root", Storage: vs})
	t.Logf("rotate-root with the caller gone: resp=%v err=%v", resp, err)

	if env.mock.LoginTokenValid(old) {
		t.Fatal("setup: inabit did not refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("the caller hung up after inabit answered and the new token is not in storage (stored token live at inabit: %v)",
			env.mock.LoginTokenValid(got))
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left after a rotation whose caller hung up", n)
	}
	if s := storedConfig(t, env).LastRotationError; s != "" {
		t.Fatalf("stored status = %q, want clean", s)
	}
}

// A periodic tick whose deadline passes while inabit answers still saves the new token (issue 8
// defect 1).
func TestTickWhoseDeadlinePassesDuringRefreshSavesTheNewToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "1h"})
	old := env.mock.LoginToken()
	env.clock.advance(time.Hour + time.Minute)
	// inabit answers after 1s; Vault's deadline on the periodic call is 500ms.
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: time.Second, Times: 1})

	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	vs := &vaultStorage{Storage: env.storage}
	resp, err := env.b.HandleRequest(ctx, &logical.Request{Operation: logical.RollbackOperation, Storage: vs})
	t.Logf("tick past its deadline: resp=%v err=%v", resp, err)

	if env.mock.Calls(mockinabit.OpRefresh) != 1 || env.mock.LoginTokenValid(old) {
		t.Fatal("setup: the tick did not refresh")
	}
	if got := storedToken(t, env); got != env.mock.LoginToken() {
		t.Fatalf("the tick's deadline passed after inabit answered and the new token is not in storage (stored token live at inabit: %v)",
			env.mock.LoginTokenValid(got))
	}
	if n := walCount(t, env); n != 0 {
		t.Fatalf("%d WAL entries left", n)
	}
}
