package inabit

// Tests of a rotation racing token reads and config writes: no read fails or shows the old token.

import (
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

func TestRotationRacingConfigWrites(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, nil)
	for round := 0; round < 20; round++ {
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := env.request(logical.UpdateOperation, "rotate-root", nil); err != nil {
				t.Errorf("rotate: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			period := []string{"100h", "200h"}[round%2]
			if resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": period}); err != nil || resp.IsError() {
				t.Errorf("config write: %v %v", resp, err)
			}
		}()
		wg.Wait()
		if storedToken(t, env) != env.mock.LoginToken() {
			t.Fatalf("round %d: a config write overwrote the rotated token", round)
		}
	}
}

// 1000 reads while rotate-root runs and the config is rewritten twice.
func TestReadsDuringRotationNeverFail(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"access_token_min_ttl": "15m"}) // every read goes upstream
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultDelay, Delay: 200 * time.Millisecond, Times: 1})
	env.mock.ResetCalls()

	var wg sync.WaitGroup
	errs := make(chan error, 1000)
	for i := 0; i < 1000; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := env.requestOK(logical.ReadOperation, "token", nil); err != nil {
				errs <- err
			}
		}()
		switch i {
		case 10:
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
					errs <- err
				}
			}()
		case 200, 500:
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				if _, err := env.requestOK(logical.UpdateOperation, "config", map[string]interface{}{"rotation_period": fmt.Sprintf("%dh", 100+i)}); err != nil {
					errs <- err
				}
			}(i)
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("operation failed during rotation: %v", err)
	}
	if got := env.mock.Calls(mockinabit.OpRefresh); got != 1 {
		t.Fatalf("refresh calls = %d, want 1", got)
	}
}

// Mutation no-login-lock-during-refresh: a token read arriving while the refresh is on the wire
// waits for it and presents the new login token; it never asks inabit with the old one, which the
// refresh is killing (its access token would die with it, or its rejection be taken for LOST).
func TestReadDuringRefreshWaitsAndPresentsTheNewToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	read := make(chan *logical.Response, 1)
	readErr := make(chan error, 1)
	calledDuring := -1
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		before := env.mock.Calls(mockinabit.OpAccessToken)
		go func() {
			resp, err := env.requestOK(logical.ReadOperation, "token", nil)
			read <- resp
			readErr <- err
		}()
		// Hold the refresh for a second: a reader not kept out would reach inabit meanwhile.
		deadline := time.Now().Add(time.Second)
		for time.Now().Before(deadline) && env.mock.Calls(mockinabit.OpAccessToken) == before {
			time.Sleep(10 * time.Millisecond)
		}
		calledDuring = env.mock.Calls(mockinabit.OpAccessToken) - before
	}})
	env.configure(t, forceFetch) // every read fetches an access token
	old := env.mock.LoginToken()
	if _, err := env.requestOK(logical.UpdateOperation, "rotate-root", nil); err != nil {
		t.Fatalf("rotate-root: %v", err)
	}
	if calledDuring < 0 || env.mock.LoginToken() == old {
		t.Fatal("setup: no refresh passed the hook")
	}
	if calledDuring != 0 {
		t.Fatalf("a token read reached inabit %d time(s) with the old login token while the refresh was on the wire", calledDuring)
	}
	var resp *logical.Response
	select {
	case resp = <-read:
	case <-time.After(10 * time.Second):
		t.Fatal("the read that waited for the refresh never finished")
	}
	if err := <-readErr; err != nil || !env.mock.AccessTokenValid(resp.Data["access_token"].(string)) {
		t.Fatalf("the read that waited for the refresh: %v", err)
	}
}
