package inabit

// config's rotation_period=0 ("not set", issue 18.5) next to an empty rotation_schedule.

import (
	"testing"

	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

// README: "rotation_period=0 and an empty rotation_schedule mean "not set", as in Vault", and for
// Terraform: "a write ... changes only the settings you changed". On a mount set to
// rotation_period=0 (rotate only at the expiry deadline) with no schedule, a write of an empty
// rotation_schedule alone (Terraform's empty string for an unset variable) names nothing to
// change, yet rotation_period silently becomes 360h: applySchedule's "an empty schedule goes back
// to the period" restores the default whenever the period is 0, though no schedule was there to
// go back from. No warning says so, and with ignore_absent_fields no plan shows it.
func TestEmptyScheduleLeavesANotSetPeriodNotSet(t *testing.T) {
	env := newTestEnv(t, mockinabit.Options{})
	env.configure(t, map[string]interface{}{"rotation_period": 0})
	if c := env.readConfig(t); c["rotation_period"] != int64(0) || c["next_rotation_reason"] != "expiry" {
		t.Fatalf("setup: %v %v", c["rotation_period"], c["next_rotation_reason"])
	}
	resp, err := env.request(logical.UpdateOperation, "config", map[string]interface{}{"rotation_schedule": ""})
	if err != nil || (resp != nil && resp.IsError()) {
		t.Fatalf("write of an empty rotation_schedule: %v %v", resp, err)
	}
	c := env.readConfig(t)
	if c["rotation_period"] != int64(0) {
		t.Fatalf("an empty rotation_schedule (\"not set\") on a rotation_period=0 mount without a schedule changed rotation_period to %v "+
			"(next_rotation_reason %v), warnings %v", c["rotation_period"], c["next_rotation_reason"], resp)
	}
}
