package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

const (
	// v010Commit is the commit tagged v0.1.0. The hash, not the tag, so a clone without tags works.
	v010Commit  = "81b131d"
	v010Version = "v0.1.0"
	v010Command = pluginCommand + "-" + v010Version
	upgradePath = "inabit-upgrade"
)

// buildV010 builds the released v0.1.0 plugin from git history, the way its own Makefile did
// (its tree carries its own go.mod, with the mock replaced from ./mockinabit inside the archive),
// and returns the binary's path and sha256.
func buildV010(t *testing.T) (string, string) {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	src := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	extract := exec.CommandContext(ctx, "sh", "-c", `git -C "$1" archive "$2" | tar -x -C "$3"`, "sh", root, v010Commit, src)
	if out, err := extract.CombinedOutput(); err != nil {
		t.Fatalf("extracting v0.1.0 (commit %s) from %s: %v\n%s\n(a shallow clone lacks it: git fetch --unshallow)", v010Commit, root, err, out)
	}
	bin := filepath.Join(t.TempDir(), v010Command)
	build := exec.CommandContext(ctx, "go", "build", "-trimpath",
		"-ldflags", "-X github.com/inabit/vault-plugin-secrets-inabit.Version="+v010Version,
		"-o", bin, "./cmd/"+pluginCommand)
	build.Dir = src
	build.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=readonly")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building v0.1.0: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	return bin, hex.EncodeToString(sum[:])
}

func (e *env) mountInfo(path string) *api.MountOutput {
	e.t.Helper()
	mounts, err := e.client().Sys().ListMounts()
	if err != nil {
		e.t.Fatal(err)
	}
	m, ok := mounts[path+"/"]
	if !ok {
		e.t.Fatalf("mount %s/ missing", path)
	}
	return m
}

func (e *env) readAt(path string) map[string]interface{} {
	e.t.Helper()
	s, err := e.client().Logical().Read(path)
	if err != nil || s == nil {
		e.t.Fatalf("read %s: %v %v", path, s, err)
	}
	return s.Data
}

// TestUpgradeFromV010 upgrades a mount from the released v0.1.0 to this build the way an
// operator does (register, secrets tune -plugin-version, plugin reload) and shows that the stored
// login token, the status fields and the schedule carry over, and that reads and rotation work.
func TestUpgradeFromV010(t *testing.T) {
	if pluginVersion == v010Version {
		t.Fatalf("pluginVersion is %s too: the upgrade would change nothing", v010Version)
	}
	oldBin, oldSHA := buildV010(t)
	e := newEnv(t, 1, mockctl.Options{})
	c := e.client()

	// Both versions in the catalog under one name, as after `vault plugin register` of each.
	copyFile(t, oldBin, filepath.Join(e.pluginDir, v010Command))
	if err := c.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Command: v010Command, SHA256: oldSHA, Version: v010Version,
	}); err != nil {
		t.Fatalf("register v0.1.0: %v", err)
	}
	if err := c.Sys().Mount(upgradePath, &api.MountInput{
		Type: pluginName, Config: api.MountConfigInput{MaxLeaseTTL: "15m", PluginVersion: v010Version},
	}); err != nil {
		t.Fatalf("mount v0.1.0: %v", err)
	}
	if m := e.mountInfo(upgradePath); m.RunningVersion != v010Version || m.RunningSha256 != oldSHA {
		t.Fatalf("before the upgrade: running %q sha %q, want %s %s", m.RunningVersion, m.RunningSha256, v010Version, oldSHA)
	}

	// v0.1.0 stores a config and serves a token.
	loginToken := e.mock.LoginToken()
	if _, err := c.Logical().Write(upgradePath+"/config", map[string]interface{}{
		"login_token": loginToken, "url": e.mockURL, "rotation_period": "2h",
	}); err != nil {
		t.Fatalf("config write on v0.1.0: %v", err)
	}
	tokenRead := func(when string) {
		t.Helper()
		s, err := c.Logical().Read(upgradePath + "/token")
		if err != nil || s == nil {
			t.Fatalf("token read %s: %v %v", when, s, err)
		}
		if tok, _ := s.Data["access_token"].(string); !e.mock.AccessTokenValid(tok) {
			t.Fatalf("token read %s: the mock does not accept the access token", when)
		}
	}
	tokenRead("on v0.1.0")
	before := e.readAt(upgradePath + "/config")
	t.Logf("config on v0.1.0: %v", before)
	for _, k := range []string{"login_token_expires_at", "login_token_issued_at", "next_rotation_at"} {
		if before[k] == "" || before[k] == nil {
			t.Fatalf("v0.1.0 config read lacks %s: %v", k, before)
		}
	}

	// The upgrade: `vault secrets tune -plugin-version=v0.2.0 inabit-upgrade/` and
	// `vault plugin reload -plugin=inabit`.
	if err := c.Sys().TuneMount(upgradePath, api.MountConfigInput{PluginVersion: pluginVersion}); err != nil {
		t.Fatalf("tune -plugin-version=%s: %v", pluginVersion, err)
	}
	if _, err := c.Sys().ReloadPlugin(&api.ReloadPluginInput{Plugin: pluginName}); err != nil {
		t.Fatalf("plugin reload: %v", err)
	}
	eventually(t, 30*time.Second, "the mount to run "+pluginVersion, func() bool {
		m := e.mountInfo(upgradePath)
		return m.RunningVersion == pluginVersion && m.RunningSha256 == pluginSHA
	}, func() string {
		m := e.mountInfo(upgradePath)
		return fmt.Sprintf("running %q sha %q plugin_version %q", m.RunningVersion, m.RunningSha256, m.PluginVersion)
	})
	if m := e.mountInfo(upgradePath); m.PluginVersion != pluginVersion {
		t.Fatalf("mount plugin_version %q after the tune, want %s", m.PluginVersion, pluginVersion)
	}

	// Everything v0.1.0 stored carries over; fields it did not have read as their defaults.
	after := e.readAt(upgradePath + "/config")
	t.Logf("config on %s: %v", pluginVersion, after)
	for _, k := range []string{"url", "rotation_period", "disable_automated_rotation", "access_token_min_ttl",
		"request_timeout", "verify_connection", "login_token_issued_at", "login_token_expires_at",
		"last_rotated_at", "next_rotation_at", "last_rotation_error", "rotation_failures"} {
		if fmt.Sprint(after[k]) != fmt.Sprint(before[k]) {
			t.Errorf("%s = %v after the upgrade, %v before", k, after[k], before[k])
		}
	}
	for k, want := range map[string]string{"rotation_period": "7200", "refresh_grace_period": "600", "login_token_lost": "false", "rotation_failures": "0"} {
		if got := fmt.Sprint(after[k]); got != want {
			t.Errorf("%s = %s after the upgrade, want %s", k, got, want)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	// The login token is the stored one: no refresh happened, and the new process gets access
	// tokens with it.
	if e.mock.Calls(mockctl.OpRefresh) != 0 || e.mock.LoginToken() != loginToken {
		t.Fatal("the login token changed during the upgrade")
	}
	tokenRead("after the upgrade")

	// The next rotation works on the carried-over config, and the schedule moves with the new
	// token. Its iat has a one-second resolution, so wait until a refresh gives a later one.
	issued, err := time.Parse(time.RFC3339, before["login_token_issued_at"].(string))
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Until(issued.Add(1100 * time.Millisecond)))
	if _, err := c.Logical().Write(upgradePath+"/rotate-root", nil); err != nil {
		t.Fatalf("rotate-root after the upgrade: %s", apiMessage(err))
	}
	if e.mock.Calls(mockctl.OpRefresh) != 1 || e.mock.LoginToken() == loginToken {
		t.Fatalf("rotate-root: %d refreshes, token changed %v", e.mock.Calls(mockctl.OpRefresh), e.mock.LoginToken() != loginToken)
	}
	rotated := e.readAt(upgradePath + "/config")
	newIssued, err := time.Parse(time.RFC3339, fmt.Sprint(rotated["login_token_issued_at"]))
	if err != nil {
		t.Fatalf("login_token_issued_at after rotation: %v", rotated)
	}
	if !newIssued.After(issued) || rotated["next_rotation_at"] == before["next_rotation_at"] {
		t.Fatalf("next_rotation_at did not move: %v before, %v after", before["next_rotation_at"], rotated["next_rotation_at"])
	}
	if want := newIssued.Add(2 * time.Hour).UTC().Format(time.RFC3339); rotated["next_rotation_at"] != want {
		t.Fatalf("next_rotation_at %v after rotation, want %s (issued + rotation_period)", rotated["next_rotation_at"], want)
	}
	if rotated["last_rotated_at"] == "" || rotated["last_rotation_error"] != "" || fmt.Sprint(rotated["rotation_failures"]) != "0" {
		t.Fatalf("status after rotation: %v", rotated)
	}
	tokenRead("after the rotation")
}
