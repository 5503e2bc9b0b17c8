package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// vaultBinary is the real `vault` built by scripts/install-vault.sh.
func vaultBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("VAULT_BIN")
	if bin == "" {
		bin, _ = filepath.Abs("../.tools/vault-v1.21.0/vault")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("no vault binary at %s: run `make vault` (or `make test`, which builds it)", bin)
	}
	return bin
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func startProcess(t *testing.T, logPath string, name string, args ...string) *exec.Cmd {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The process must take its address and token from its config alone, not from this shell.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "VAULT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
		logFile.Close()
	})
	return cmd
}

// devServer runs the real vault binary in dev mode with the plugin registered and mounted, a file
// audit device enabled, and trace logging, all under dir.
func devServer(t *testing.T, dir string, mockURL, loginToken string, extra map[string]interface{}) *api.Client {
	t.Helper()
	bin := vaultBinary(t)
	pluginDir := filepath.Join(dir, "plugins")
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyFile(t, pluginBinary, filepath.Join(pluginDir, pluginCommand))
	hcl := filepath.Join(dir, "server.hcl")
	if err := os.WriteFile(hcl, []byte(fmt.Sprintf("plugin_directory = %q\n", pluginDir)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	startProcess(t, filepath.Join(dir, "server.log"), bin, "server", "-dev", "-dev-root-token-id=root",
		"-dev-listen-address="+addr, "-config="+hcl, "-log-level=trace")

	cfg := api.DefaultConfig()
	cfg.Address = "http://" + addr
	c, err := api.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.SetToken("root")
	eventually(t, 60*time.Second, "vault dev server", func() bool {
		h, err := c.Sys().Health()
		return err == nil && h.Initialized && !h.Sealed
	})
	setupMount(t, c, filepath.Join(dir, "audit.log"))
	data := map[string]interface{}{"url": mockURL, "login_token": loginToken}
	for k, v := range extra {
		data[k] = v
	}
	if _, err := c.Logical().Write(mountPath+"/config", data); err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

// TestVaultAgentRendersFreshTokens: access tokens live 90 s, so each lease lasts 45 s and Agent
// re-renders every ~40 s. Over several cycles the rendered token must never be expired when
// checked, and it must change.
func TestVaultAgentRendersFreshTokens(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mock := startMock(t, mockctl.Options{AccessTokenTTL: 90 * time.Second})
	c := devServer(t, dir, mock.URL(), mock.LoginToken(), map[string]interface{}{"access_token_min_ttl": "2m"})

	tokenFile := filepath.Join(dir, "vault-token")
	rendered := filepath.Join(dir, "inabit-access-token")
	if err := os.WriteFile(tokenFile, []byte("root"), 0o600); err != nil {
		t.Fatal(err)
	}
	agentHCL := filepath.Join(dir, "agent.hcl")
	if err := os.WriteFile(agentHCL, []byte(fmt.Sprintf(`
vault { address = %q }
auto_auth {
  method "token_file" {
    config = { token_file_path = %q }
  }
}
template {
  contents    = "{{ with secret \"inabit/token\" }}{{ .Data.access_token }}{{ end }}"
  destination = %q
}
`, c.Address(), tokenFile, rendered)), 0o600); err != nil {
		t.Fatal(err)
	}
	startProcess(t, filepath.Join(dir, "agent.log"), vaultBinary(t), "agent", "-config="+agentHCL, "-log-level=debug")

	agentLog := func() string {
		raw, _ := os.ReadFile(filepath.Join(dir, "agent.log"))
		return string(raw)
	}
	eventually(t, 30*time.Second, "agent's first render", func() bool {
		raw, err := os.ReadFile(rendered)
		return err == nil && len(raw) > 0
	}, agentLog)
	seen := map[string]bool{}
	deadline := time.Now().Add(170 * time.Second)
	for time.Now().Before(deadline) {
		raw, err := os.ReadFile(rendered)
		if err == nil && len(raw) > 0 {
			tok := strings.TrimSpace(string(raw))
			if !mock.AccessTokenValid(tok) {
				t.Fatalf("rendered token is expired or invalid (after %d renders); agent log:\n%s", len(seen), agentLog())
			}
			seen[tok] = true
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(seen) < 4 {
		t.Fatalf("agent rendered %d distinct tokens in 170 s, want at least 4 (a new one every ~40 s)", len(seen))
	}
	assertNoTokensInFiles(t, mock, filepath.Join(dir, "server.log"), filepath.Join(dir, "audit.log"), filepath.Join(dir, "agent.log"))
}

// assertNoTokensInFiles: Vault HMACs response data in audit logs and the plugin never logs a
// token, so no JWT minted by the mock may appear in clear in any log or audit line.
func assertNoTokensInFiles(t *testing.T, mock *mockctl.Mock, paths ...string) {
	t.Helper()
	header := tokenHeader(mock)
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("reading %s: %v", p, err)
		}
		if len(raw) == 0 {
			t.Fatalf("%s is empty: nothing was checked", p)
		}
		if strings.Contains(string(raw), header) {
			t.Errorf("a token appears in clear in %s", filepath.Base(p))
		}
	}
}
