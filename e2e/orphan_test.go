package e2e

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

// TestPluginExitsWhenVaultIsKilled: a Vault killed with SIGKILL (or by the OOM killer) never tells
// its plugins to stop; each crash used to leave one more plugin process running, reparented to
// init. The plugin notices its parent is gone and exits within seconds.
func TestPluginExitsWhenVaultIsKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	mock := startMock(t, mockctl.Options{})
	devServer(t, dir, mock.URL(), mock.LoginToken(), nil)

	plugins := pluginPIDs(t, filepath.Join(dir, "plugins", pluginCommand))
	vaults := pluginPIDs(t, filepath.Join(dir, "server.hcl"))
	if len(plugins) == 0 || len(vaults) != 1 {
		t.Fatalf("setup: plugin processes %v, vault processes %v", plugins, vaults)
	}
	t.Cleanup(func() { // a failed run must not leave orphans behind either
		for _, pid := range plugins {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	if err := syscall.Kill(vaults[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	eventually(t, 30*time.Second, "every plugin process to exit after Vault was killed", func() bool {
		for _, pid := range plugins {
			if running(pid) {
				return false
			}
		}
		return true
	}, func() string { return "plugin processes still running: " + strconv.Itoa(len(plugins)) })
	t.Logf("plugin exited %s after Vault was killed", time.Since(killed).Round(100*time.Millisecond))
}

// running says whether pid is a live process: not gone, and not a zombie waiting for a parent
// (a container's init may never reap it).
func running(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...: the state follows the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}
