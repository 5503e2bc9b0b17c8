package e2e

import (
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// A plain DELETE of a config holding a live login token (terraform destroy, a script) is a 400
// over Vault's HTTP API that deletes nothing; the real `vault delete <mount>/config force=true`,
// which Vault hands the plugin as the DELETE's query string, deletes it.
func TestConfigDeleteNeedsForceOverAPIAndCLI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, 1, mockctl.Options{})
	e.configure(nil)
	c := e.client()

	_, err := c.Logical().Delete(mountPath + "/config")
	if statusOf(err) != http.StatusBadRequest || !strings.Contains(apiMessage(err), `"vault delete inabit/config force=true"`) {
		t.Fatalf("plain DELETE of a live login token: %v, want a 400 naming vault delete inabit/config force=true", err)
	}
	e.readToken(c)

	cmd := exec.Command(vaultBinary(t), "delete", mountPath+"/config", "force=true")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "VAULT_ADDR="+c.Address(), "VAULT_TOKEN="+c.Token(), "VAULT_CACERT="+e.cluster.CACertPEMFile)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("vault delete %s/config force=true: %v\n%s", mountPath, err, out)
	}
	if s, err := c.Logical().Read(mountPath + "/config"); err != nil || s != nil {
		t.Fatalf("config after vault delete force=true: %v %v, want none", s, err)
	}
}
