package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

const pluginModule = "github.com/inabit/vault-plugin-secrets-inabit"

// `go install …/cmd/vault-plugin-secrets-inabit@vX.Y.Z` builds without the release's -ldflags. The
// binary must still report vX.Y.Z, or `vault plugin register -version=vX.Y.Z` fails with "plugin
// version mismatch". The tag is made up and served from a file-based GOPROXY (goInstallAt).
func TestGoInstalledBinaryReportsItsModuleVersion(t *testing.T) {
	t.Parallel()
	const tag = "v0.9.7"
	bin := goInstallAt(t, tag)

	e := newEnv(t, 1, mockctl.Options{})
	const name, command = "inabit-installed", pluginCommand + "-installed"
	copyFile(t, bin, filepath.Join(e.pluginDir, command))
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	c := e.client()
	if err := c.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: name, Type: api.PluginTypeSecrets, Command: command, SHA256: hex.EncodeToString(sum[:]), Version: tag,
	}); err != nil {
		t.Fatalf("vault plugin register -version=%s of the binary go install built at %s: %v", tag, tag, err)
	}
	if err := c.Sys().Mount(name, &api.MountInput{Type: name, Config: api.MountConfigInput{PluginVersion: tag}}); err != nil {
		t.Fatal(err)
	}
	mounts, err := c.Sys().ListMounts()
	if err != nil {
		t.Fatal(err)
	}
	if got := mounts[name+"/"].RunningVersion; got != tag {
		t.Fatalf("running_plugin_version = %q, want %q", got, tag)
	}
}

// goInstallAt runs `go install <module>/cmd/vault-plugin-secrets-inabit@tag` as a user would, and
// returns the binary. The module at tag is this working tree's files that git tracks or does not
// ignore, less the e2e module (a module of its own), zipped the way a module proxy serves them,
// behind a file-based GOPROXY; its dependencies come from the local module cache's download
// directory, which the suite's own build of the plugin has filled. GOMODCACHE is a temporary one,
// so the made-up tag never reaches the machine's module cache (unpacking the dependencies into it
// costs some 700 MB of temporary disk and most of the 20 s). No checksum database knows the tag,
// so GOSUMDB is off; the dependencies are the ones Go verified when it first downloaded them.
func goInstallAt(t *testing.T, tag string) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	files, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, f := range strings.Split(strings.TrimRight(string(files), "\x00"), "\x00") {
		if strings.HasPrefix(f, "e2e/") {
			continue
		}
		body, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) {
			continue // deleted in the working tree, not yet in git
		}
		if err != nil {
			t.Fatal(err)
		}
		w, err := zw.Create(pluginModule + "@" + tag + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	goMod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	proxy := t.TempDir()
	dir := filepath.Join(proxy, pluginModule, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{
		"list":        []byte(tag + "\n"),
		tag + ".info": []byte(`{"Version":"` + tag + `","Time":"2026-01-01T00:00:00Z"}`),
		tag + ".mod":  goMod,
		tag + ".zip":  buf.Bytes(),
	} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	goEnv := func(key string) string {
		out, err := exec.Command("go", "env", key).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", key, err)
		}
		return strings.TrimSpace(string(out))
	}
	cacheProxy := "file://" + filepath.Join(goEnv("GOMODCACHE"), "cache", "download")
	gobin := t.TempDir()
	cmd := exec.Command("go", "install", "-trimpath", pluginModule+"/cmd/"+pluginCommand+"@"+tag)
	cmd.Dir = t.TempDir() // outside any module
	cmd.Env = append(os.Environ(),
		"GOPROXY=file://"+proxy+","+cacheProxy+","+goEnv("GOPROXY"),
		"GOSUMDB=off",
		"GOMODCACHE="+t.TempDir(),
		"GOFLAGS=-modcacherw", // so the temporary module cache can be removed
		"GOBIN="+gobin,
		"GOTOOLCHAIN=local",
	)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go install %s@%s: %v\n%s", pluginModule, tag, err, out)
	}
	return filepath.Join(gobin, pluginCommand)
}
