package e2e

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/api"
	vaulthttp "github.com/hashicorp/vault/http"
	"github.com/hashicorp/vault/vault"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

const (
	pluginName    = "inabit"
	pluginCommand = "vault-plugin-secrets-inabit"
	pluginVersion = "v0.2.0"
	mountPath     = "inabit"
)

// pluginBinary and pluginSHA are built once for the whole suite from the repository root, with
// the same ldflags a release uses, so the tests exercise the real binary over real gRPC.
// mockBinary is the mock inabit (internal/cmd/mock-inabit of the plugin's module): $MOCK_INABIT_BIN
// as `make e2e` builds it, or built here when that is unset. Every mock a test uses runs as a
// process of its own, driven over its control API by internal/mockctl.
var (
	pluginBinary string
	pluginSHA    string
	mockBinary   string
)

func TestMain(m *testing.M) {
	if os.Getenv("SKIP_VAULT_E2E") == "1" {
		fmt.Println("!!! SKIP_VAULT_E2E=1: the end-to-end suite on a real Vault is SKIPPED. CI never sets this. !!!")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "inabit-plugin-bin-")
	if err != nil {
		panic(err)
	}
	pluginBinary = filepath.Join(dir, pluginCommand)
	// The inabit_crashpoints tag adds the test-only crash points (crashpoint.go); release builds
	// lack them.
	build := exec.Command("go", "build", "-trimpath", "-tags", "inabit_crashpoints",
		"-ldflags", "-X github.com/inabit/vault-plugin-secrets-inabit.Version="+pluginVersion,
		"-o", pluginBinary, "./cmd/"+pluginCommand)
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Println("building the plugin failed:", err)
		os.Exit(1)
	}
	raw, err := os.ReadFile(pluginBinary)
	if err != nil {
		panic(err)
	}
	sum := sha256.Sum256(raw)
	pluginSHA = hex.EncodeToString(sum[:])
	if mockBinary, err = mockInabitBinary(dir); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// mockInabitBinary is $MOCK_INABIT_BIN, or the mock built into dir from the repository root.
func mockInabitBinary(dir string) (string, error) {
	if bin := os.Getenv("MOCK_INABIT_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err != nil {
			return "", err
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("MOCK_INABIT_BIN=%s: %w (make e2e builds it)", bin, err)
		}
		return abs, nil
	}
	bin := filepath.Join(dir, "mock-inabit")
	build := exec.Command("go", "build", "-o", bin, "./internal/cmd/mock-inabit")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building the mock inabit failed: %w", err)
	}
	return bin, nil
}

// startMock runs one mock inabit process for t; it stops when t's cleanups run (after those
// registered later, such as Vault's, since cleanups run last-in first-out).
func startMock(t *testing.T, opts mockctl.Options) *mockctl.Mock {
	t.Helper()
	m, err := mockctl.Start(mockBinary, opts)
	if err != nil {
		t.Fatalf("mock inabit: %v", err)
	}
	m.OnError = func(err error) { t.Errorf("mock inabit: %v", err) }
	t.Cleanup(m.Close)
	return m
}

// jwtHeader is the first segment every JWT the mock mints shares (HS256, typ JWT).
const jwtHeader = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

// tokenHeader is the header of m's tokens, read from its live login token (jwtHeader when the
// token was revoked): any occurrence in a log is a leaked token.
func tokenHeader(m *mockctl.Mock) string {
	if h := strings.SplitN(m.LoginToken(), ".", 2)[0]; h != "" {
		return h
	}
	return jwtHeader
}

// logCapture keeps everything Vault and the plugin log, to search for leaked tokens.
type logCapture struct {
	mu  chan struct{}
	buf strings.Builder
}

func newLogCapture() *logCapture {
	l := &logCapture{mu: make(chan struct{}, 1)}
	return l
}

func (l *logCapture) Write(p []byte) (int, error) {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.buf.Write(p)
}

func (l *logCapture) String() string {
	l.mu <- struct{}{}
	defer func() { <-l.mu }()
	return l.buf.String()
}

type env struct {
	t         *testing.T
	pluginDir string
	auditLog  string
	cluster   *vault.TestCluster
	mock      *mockctl.Mock
	mockURL   string
	logs      *logCapture
}

// newEnv starts an in-process Vault cluster (real core, real HTTP API, real plugin process) and a
// mock inabit, registers the plugin by sha256 and version, and mounts it at inabit/.
func newEnv(t *testing.T, cores int, opts mockctl.Options) *env {
	t.Helper()
	pluginDir := t.TempDir()
	copyFile(t, pluginBinary, filepath.Join(pluginDir, pluginCommand))

	mock := startMock(t, opts)

	logs := newLogCapture()
	logger := hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Trace, Output: io.MultiWriter(logs, testWriter{t})})
	cluster := vault.NewTestCluster(t, &vault.CoreConfig{
		PluginDirectory: pluginDir,
		RollbackPeriod:  time.Second,
	}, &vault.TestClusterOptions{
		HandlerFunc: vaulthttp.Handler,
		NumCores:    cores,
		Logger:      logger,
	})
	cluster.Start()
	t.Cleanup(cluster.Cleanup)
	e := &env{t: t, pluginDir: pluginDir, cluster: cluster, mock: mock, mockURL: mock.URL(), logs: logs}
	active := e.waitActive()

	// Every in-process cluster audits to a file, so the whole suite proves the plugin never
	// defeats Vault's HMACing of response data.
	e.auditLog = filepath.Join(t.TempDir(), "audit.log")
	setupMount(t, active.Client, e.auditLog)
	t.Cleanup(func() { e.assertNoTokenInLogs() })
	return e
}

type testWriter struct{ t *testing.T }

// Cluster logs go to the test log only on failure-worthy levels; trace lives in logCapture.
func (w testWriter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), "[ERROR]") && strings.Contains(string(p), "inabit") {
		w.t.Logf("%s", strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	raw, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, raw, 0o755); err != nil {
		t.Fatal(err)
	}
}

func (e *env) waitActive() *vault.TestClusterCore {
	e.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		for _, core := range e.cluster.Cores {
			if standby, err := core.Core.Standby(); err == nil && !standby && !core.Core.Sealed() {
				return core
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	e.t.Fatal("no core became active")
	return nil
}

func (e *env) standbys() []*vault.TestClusterCore {
	var out []*vault.TestClusterCore
	for _, core := range e.cluster.Cores {
		if standby, err := core.Core.Standby(); err == nil && standby && !core.Core.Sealed() {
			out = append(out, core)
		}
	}
	return out
}

func (e *env) client() *api.Client { return e.waitActive().Client }

func (e *env) configure(extra map[string]interface{}) {
	e.t.Helper()
	data := map[string]interface{}{"login_token": e.mock.LoginToken(), "url": e.mockURL}
	for k, v := range extra {
		data[k] = v
	}
	if _, err := e.client().Logical().Write(mountPath+"/config", data); err != nil {
		e.t.Fatalf("config write: %v", err)
	}
}

func (e *env) readConfig() map[string]interface{} {
	e.t.Helper()
	s, err := e.client().Logical().Read(mountPath + "/config")
	if err != nil || s == nil {
		e.t.Fatalf("config read: %v %v", s, err)
	}
	return s.Data
}

func (e *env) readToken(c *api.Client) *api.Secret {
	e.t.Helper()
	s, err := c.Logical().Read(mountPath + "/token")
	if err != nil || s == nil {
		e.t.Fatalf("token read: %v %v", s, err)
	}
	return s
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool, diagnostics ...func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, d := range diagnostics {
		t.Log(d())
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func statusOf(err error) int {
	var re *api.ResponseError
	if errors.As(err, &re) {
		return re.StatusCode
	}
	return 0
}

// assertNoTokenInLogs: every JWT the mock mints shares one header, so any occurrence in Vault's or
// the plugin's trace logs is a leak.
func (e *env) assertNoTokenInLogs() {
	header := tokenHeader(e.mock)
	if strings.Contains(e.logs.String(), header) {
		e.t.Errorf("a token appeared in Vault or plugin logs")
	}
	if !strings.Contains(e.logs.String(), "secrets.inabit") {
		e.t.Errorf("no plugin log lines were captured: the log check proves nothing")
	}
	audit, err := os.ReadFile(e.auditLog)
	if err != nil || len(audit) == 0 {
		e.t.Errorf("audit log %s missing or empty: %v", e.auditLog, err)
	}
	if strings.Contains(string(audit), header) {
		e.t.Errorf("a token appears in clear in the audit log")
	}
}

// apiMessage is the error text a person sees, without the client library's framing.
func apiMessage(err error) string {
	var re *api.ResponseError
	if errors.As(err, &re) && len(re.Errors) > 0 {
		msg := strings.Join(re.Errors, "; ")
		// Vault wraps plugin errors as "1 error occurred:\n\t* <message>\n\n".
		if i := strings.Index(msg, "* "); i >= 0 {
			msg = msg[i+2:]
		}
		return strings.TrimSpace(msg)
	}
	return err.Error()
}

// setupMount enables a file audit device, registers the plugin by sha256 and version, and mounts
// it at inabit/ with leases capped at the access-token lifetime.
func setupMount(t *testing.T, c *api.Client, auditLog string) {
	t.Helper()
	if err := c.Sys().EnableAuditWithOptions("file", &api.EnableAuditOptions{
		Type: "file", Options: map[string]string{"file_path": auditLog},
	}); err != nil {
		t.Fatalf("enable audit: %v", err)
	}
	if err := c.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Command: pluginCommand, SHA256: pluginSHA, Version: pluginVersion,
	}); err != nil {
		t.Fatalf("register plugin: %v", err)
	}
	if err := c.Sys().Mount(mountPath, &api.MountInput{
		Type: pluginName, Config: api.MountConfigInput{MaxLeaseTTL: "15m", PluginVersion: pluginVersion},
	}); err != nil {
		t.Fatalf("enable plugin: %v", err)
	}
}
