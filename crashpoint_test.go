package inabit

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// A release build must not contain the test-only crash hook: not the code, not even the name of
// the environment variable that would arm it.
func TestReleaseBuildHasNoCrashPoints(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the plugin")
	}
	bin := filepath.Join(t.TempDir(), "plugin")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/vault-plugin-secrets-inabit")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("INABIT_PLUGIN_TEST_CRASH_AT")) {
		t.Fatal("the release binary carries the crash-point environment variable")
	}

	tagged := filepath.Join(t.TempDir(), "plugin-e2e")
	build = exec.Command("go", "build", "-trimpath", "-tags", "inabit_crashpoints", "-o", tagged, "./cmd/vault-plugin-secrets-inabit")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build -tags inabit_crashpoints: %v\n%s", err, out)
	}
	if raw, _ := os.ReadFile(tagged); !bytes.Contains(raw, []byte("INABIT_PLUGIN_TEST_CRASH_AT")) {
		t.Fatal("test setup: the tagged build should carry the crash points; this test proves nothing")
	}
}
