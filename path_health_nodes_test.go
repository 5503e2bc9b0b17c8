package inabit

// inabit/health across nodes and failures (issue 18.6). Each test states the promise it holds the
// path to: "healthy" means usable, and needs_human is true whenever only a human can still help.

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/hashicorp/vault/sdk/helper/consts"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/inabitapi"
	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// perfStandby is another node of the cluster in Vault Enterprise's performance-standby state: it
// serves reads itself from the shared storage and forwards what answers logical.ErrReadOnly.
func perfStandby(t *testing.T, env *testEnv) *backend {
	t.Helper()
	return newNode(t, env, func(c *logical.BackendConfig) {
		sv := logical.TestSystemView()
		sv.ReplicationStateVal = consts.ReplicationPerformanceStandby
		c.System = sv
	})
}

// viaNode sends a read to node as Vault does: a logical.ErrReadOnly answer is forwarded to the
// active node (env.b).
func viaNode(env *testEnv, node *backend, path string) (*logical.Response, error) {
	req := func() *logical.Request {
		return &logical.Request{Operation: logical.ReadOperation, Path: path, MountPoint: "inabit/", Storage: env.storage}
	}
	resp, err := node.HandleRequest(context.Background(), req())
	if err == logical.ErrReadOnly {
		return env.b.HandleRequest(context.Background(), req())
	}
	return resp, err
}

func healthVia(t *testing.T, env *testEnv, node *backend) map[string]interface{} {
	t.Helper()
	resp, err := viaNode(env, node, "health")
	if err != nil || resp == nil || resp.IsError() {
		t.Fatalf("health read: %v %v", resp, err)
	}
	return resp.Data
}

// A rotated token that storage refused is held in the active node's memory only. A monitor whose
// health read lands on a performance standby (a load balancer in front of the cluster) reads the
// in-flight status the rotation left in storage and is told "pending", needs_human false, for as
// long as the active node holds the only copy: the one state where a human must act before a
// restart, hidden. health has no ForwardPerformanceStandby, so the standby answers itself.
func TestHealthOnAPerformanceStandbyNeverHidesAnUnsavedToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.b.newAPI = apiOver(&refreshHookTransport{base: http.DefaultTransport, onRefresh: func() {
		env.storage.failPutsTo(configStorageKey, true)
	}})
	env.configure(t, nil)
	_, _ = env.request(logical.UpdateOperation, "rotate-root", nil)
	if h := env.readHealth(t); h["state"] != "unsaved" {
		t.Fatalf("setup: the active node's health is %v, want unsaved", h)
	}
	standby := perfStandby(t, env)
	for i := 0; i < 3; i++ { // long past the stored outcome_check_at
		env.clock.advance(20 * time.Minute)
		if h := healthVia(t, env, standby); h["needs_human"] != true {
			t.Fatalf("+%d min: health on a performance standby while the active node holds an unsaved rotated login token: %v", 20*(i+1), h)
		}
	}
}

// A read that inabit answers "this login token is dead" fails with a 502 telling the reader to
// write a new login_token, and health, read right after, says healthy: "healthy" is not
// "usable" until a later tick has confirmed the rejection (at least rotation.ConfirmAfter later,
// at Vault's next periodic call). Health sees only the stored status, never the rejection the
// node holds in memory.
func TestHealthIsNotHealthyWhileReadsSeeInabitRejectTheToken(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	env.mock.IssueLoginToken() // inabit revoked the stored token (refreshed outside Vault)
	if err := env.readTokenErr(); err == nil {
		t.Fatal("setup: the read succeeded with a revoked login token")
	}
	if h := env.readHealth(t); h["state"] == "healthy" {
		t.Fatalf("health right after a read failed because inabit rejected the login token: %v", h)
	}
}

// On a performance standby, reads are served by the standby itself. When inabit rejects the
// stored login token there, the rejection is noted in the standby's memory, which no tick ever
// looks at (ticks run on the active node), and nothing forwards it: the active node's tick sees
// no rejection and no ProbeBeforeRefresh, so it never probes. Reads through the standby fail
// with 502 for as long as it lasts (until the next rotation is due: 15 days with the default
// period), LOST is never recorded, and health on every node says healthy.
func TestRejectionSeenOnAPerformanceStandbyIsConfirmedByTheActiveNode(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, forceFetch)
	standby := perfStandby(t, env)
	if resp, err := viaNode(env, standby, "token"); err != nil || resp.IsError() {
		t.Fatalf("setup: read via the standby: %v %v", resp, err)
	}
	env.mock.IssueLoginToken() // inabit revoked the stored token
	for i := 0; i < 5; i++ {   // the applications read through the standby...
		resp, err := viaNode(env, standby, "token")
		if err == nil && !resp.IsError() {
			t.Fatal("setup: a read with a revoked login token succeeded")
		}
	}
	for i := 0; i < 10; i++ { // ...while the active node ticks for ten minutes
		env.clock.advance(time.Minute)
		env.tick(t)
	}
	for name, node := range map[string]*backend{"active": env.b, "standby": standby} {
		if h := healthVia(t, env, node); h["needs_human"] != true {
			t.Errorf("health via the %s node, ten minutes after every read through the standby began failing with inabit's rejection: %v (stored lost %v)",
				name, h, storedConfig(t, env).LoginTokenLost)
		}
	}
}

// A refresh sent at the expiry deadline (the only rotation rotation_period=0 plans) gets a
// proxy's 502, and inabit stays unreachable behind that proxy. Every tick probes and the outcome
// stays unknown: health says "pending", needs_human false, until the token has expired and it is
// too late (the rotation was never applied, so the stored token simply dies). "retrying" pages
// once the deadline has passed; "pending" never does.
func TestHealthPagesAnUnsettledRefreshBeforeTheTokenDies(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{LoginTokenTTL: 2 * time.Hour})
	env.b.newAPI = apiOver(http.DefaultTransport, inabitapi.WithoutRetryWait())
	env.configure(t, map[string]interface{}{"rotation_period": 0, "request_timeout": 1, "refresh_grace_period": 30})
	env.mock.InjectFault(mockinabit.OpRefresh, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 502, Body: "<html><title>502 Bad Gateway</title></html>"})
	env.mock.InjectFault(mockinabit.OpAccessToken, mockinabit.Fault{Kind: mockinabit.FaultStatus, Status: 502, Body: "<html><title>502 Bad Gateway</title></html>"})
	if cfg := env.readConfig(t); cfg["next_rotation_reason"] != "expiry" {
		t.Fatalf("setup: next_rotation_reason %v", cfg["next_rotation_reason"])
	}
	env.clock.advance(90*time.Minute + time.Second) // the deadline: exp - 30m
	env.tick(t)
	if env.mock.Calls(mockinabit.OpRefresh) != 1 {
		t.Fatalf("setup: %d refreshes at the deadline", env.mock.Calls(mockinabit.OpRefresh))
	}
	for i := 0; i < 25; i++ { // 25 minutes of ticks: 5 minutes before exp
		env.clock.advance(time.Minute)
		env.tick(t)
	}
	h := env.readHealth(t)
	if h["needs_human"] != true {
		t.Fatalf("5 minutes before the login token expires, 25 minutes after its refresh got a 502 and inabit has been unreachable since: health %v", h)
	}
}
