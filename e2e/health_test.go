package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// monitoringPolicy is the README's read-only monitoring policy.
const monitoringPolicy = `path "inabit/health" { capabilities = ["read"] }`

// TestMonitoringPolicyReadsHealthAndSeesLost: on Community Vault (no events), a token with only
// the README's monitoring policy reads inabit/health, nothing else, and sees a revoked login token
// turn into needs_human=true with the reason, as the README's alert command checks it.
func TestMonitoringPolicyReadsHealthAndSeesLost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(map[string]interface{}{"access_token_min_ttl": "15m"})
	root := e.client()
	if err := root.Sys().PutPolicy("inabit-monitor", monitoringPolicy); err != nil {
		t.Fatal(err)
	}
	secret, err := root.Auth().Token().Create(&api.TokenCreateRequest{Policies: []string{"inabit-monitor"}, NoDefaultPolicy: true})
	if err != nil {
		t.Fatal(err)
	}
	monitor, err := root.Clone()
	if err != nil {
		t.Fatal(err)
	}
	monitor.SetToken(secret.Auth.ClientToken)

	health := func() map[string]interface{} {
		s, err := monitor.Logical().Read(mountPath + "/health")
		if err != nil || s == nil {
			t.Fatalf("monitor reading health: %v", err)
		}
		return s.Data
	}
	if h := health(); h["state"] != "healthy" || h["needs_human"] != false {
		t.Fatalf("health of a working mount: %v", h)
	}
	for _, p := range []string{"/config", "/token", "/static-token"} {
		if _, err := monitor.Logical().Read(mountPath + p); statusOf(err) != 403 {
			t.Fatalf("the monitoring policy reads %s: %v", p, err)
		}
	}

	e.mock.RevokeLoginToken()
	_, _ = root.Logical().Read(mountPath + "/token") // a reader meets the rejection
	eventually(t, 30*time.Second, "needs_human after inabit revoked the token", func() bool { return health()["needs_human"] == true })
	if h := health(); h["state"] != "lost" || !strings.Contains(h["reason"].(string), "LOGIN TOKEN LOST") {
		t.Fatalf("health after the revocation: %v", h)
	}
}
