package inabit

// Tests of a rotation that storage refuses: its records (inabit not called), its new token (held).

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/framework"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func TestWALWriteFailureDoesNotCallInabit(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsTo(framework.WALPrefix, true)
	_, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "inabit was not called") {
		t.Fatalf("err = %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 {
		t.Fatal("inabit was called without a WAL entry")
	}
	if !env.mock.LoginTokenValid(storedToken(t, env)) {
		t.Fatal("stored token died")
	}
	if !strings.Contains(env.readConfig(t)["last_rotation_error"].(string), "storage is not writable") {
		t.Fatal("failure not recorded")
	}
}

// The in-flight status is written before the refresh; storage that refuses it would refuse the
// new token too, so inabit is not called.
func TestInFlightStatusWriteFailureDoesNotCallInabit(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsTo(configStorageKey, true)
	_, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err == nil || !strings.Contains(err.Error(), "inabit was not called") {
		t.Fatalf("err = %v", err)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 0 || walCount(t, env) != 0 {
		t.Fatal("inabit was called, or a WAL entry left, although the status could not be written")
	}
}

// Found by the simulation (seeds 90, 201): a refresh inabit declined drops its WAL entry, and if
// storage then refuses the status write, the in-flight "outcome unknown" status is left with no
// WAL entry behind it. The next tick settles it by asking inabit instead of showing it until the
// next rotation.
func TestInFlightStatusLeftWithoutWALEntryIsSettledByTheNextTick(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": "360h"})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultGraphQLError, Code: "FORBIDDEN", Message: "not allowed", Times: 1})
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the outcome's status fails
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err == nil {
		t.Fatal("a declined refresh succeeded")
	}
	if st := storedConfig(t, env); st.OutcomeCheckAt.IsZero() || walCount(t, env) != 0 {
		t.Fatalf("test setup: outcome_check_at %v, %d WAL entries", st.OutcomeCheckAt, walCount(t, env))
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(time.Minute)
	env.tick(t)
	if st := storedConfig(t, env); !st.OutcomeCheckAt.IsZero() || st.LastRotationError != "" || st.LoginTokenLost {
		t.Fatalf("stale in-flight status not settled: outcome_check_at %v, status %q", st.OutcomeCheckAt, st.LastRotationError)
	}
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("the tick sent a refresh")
	}
}

func TestPersistFailureKeepsTokenInMemoryUntilSaved(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails

	resp, err := env.request(logical.UpdateOperation, "rotate-root", nil)
	if err != nil || len(resp.Warnings) != 1 || !strings.Contains(resp.Warnings[0], "saving it to storage failed") {
		t.Fatalf("resp=%v err=%v", resp, err)
	}
	live := env.mock.LoginToken()
	if storedToken(t, env) == live {
		t.Fatal("test setup: storage accepted the write")
	}
	// Reads keep working with the in-memory token and warn about it.
	tr := env.readToken(t)
	if len(tr.Warnings) == 0 || !strings.Contains(tr.Warnings[0], "held in memory") {
		t.Fatalf("token read warnings = %v", tr.Warnings)
	}
	if got := env.readConfig(t)["last_rotation_error"].(string); !strings.Contains(got, "held in memory") {
		t.Fatalf("config status = %q", got)
	}
	if walCount(t, env) != 1 {
		t.Fatal("WAL entry must stay until the token is saved")
	}
	// A tick while storage is still broken must not rotate again (that would orphan the token).
	env.clock.advance(400 * time.Hour)
	env.tick(t)
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatal("rotated again while the previous token was unsaved")
	}
	env.storage.failPutsTo(configStorageKey, false)
	env.clock.advance(-400 * time.Hour)
	env.tick(t)
	if storedToken(t, env) != live {
		t.Fatal("the next tick did not save the in-memory token")
	}
	if walCount(t, env) != 0 || env.readConfig(t)["last_rotation_error"] != "" {
		t.Fatal("state not clean after the save")
	}
}

// Mutation no-save-retry: storage that refuses the rotated token's save once and then recovers
// gets the token within the same rotation: it is stored, the rotation succeeds, and nothing is
// left held in memory as the only copy.
func TestRotatedTokenSaveRefusedOnceIsRetried(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		// The in-flight status is written; storage refuses the next config write (the new token), once.
		env.storage.refuseNextPuts(configStorageKey, 1)
	}})
	env.configure(t, nil)
	old := env.mock.LoginToken()
	resp, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil)
	if env.mock.LoginToken() == old {
		t.Fatal("setup: inabit did not apply the refresh")
	}
	_, _, held := env.b.login.held()
	if got := storedToken(t, env); got != env.mock.LoginToken() || held || err != nil || len(resp.Warnings) != 0 {
		t.Fatalf("storage refused the new token's save once: stored the live token %v, held in memory %v, rotate-root %v (warnings %v)",
			got == env.mock.LoginToken(), held, err, resp.Warnings)
	}
}

func TestCleanWithUnsavedTokenLogsLoudly(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	env.storage.failPutsAfter(configStorageKey, 1) // the in-flight status, then the save fails
	if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatal(err)
	}
	env.b.Cleanup(context.Background())
	if !strings.Contains(env.logs.String(), "never saved to storage") {
		t.Fatal("unmount with an unsaved token was silent")
	}
}
