package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

var faultCases = []struct {
	name  string
	fault mockctl.Fault
}{
	{"HTTP 500", mockctl.Fault{Kind: mockctl.FaultStatus, Status: 500, Body: "internal error"}},
	{"HTTP 503", mockctl.Fault{Kind: mockctl.FaultStatus, Status: 503, Body: "<html><title>Service Unavailable</title></html>", ContentType: "text/html"}},
	{"HTTP 429 Retry-After 30", mockctl.Fault{Kind: mockctl.FaultStatus, Status: 429, RetryAfter: "30"}},
	{"timeout, never applied", mockctl.Fault{Kind: mockctl.FaultHang, Delay: 6 * time.Second}},
	{"HTML 401 page", mockctl.Fault{Kind: mockctl.FaultStatus, Status: 401, Body: "<html><title>401 Unauthorized</title></html>", ContentType: "text/html"}},
	{"HTML 403 WAF page", mockctl.Fault{Kind: mockctl.FaultStatus, Status: 403, Body: "<html><title>403 Forbidden</title></html>", ContentType: "text/html"}},
	{"GraphQL UNAUTHENTICATED", mockctl.Fault{Kind: mockctl.FaultGraphQLError, Code: "UNAUTHENTICATED", Message: "Unauthorized"}},
	{"GraphQL generic error", mockctl.Fault{Kind: mockctl.FaultGraphQLError, Code: "INTERNAL_SERVER_ERROR", Message: "resolver failed"}},
	{"garbage body", mockctl.Fault{Kind: mockctl.FaultGarbage}},
	{"5 MiB body", mockctl.Fault{Kind: mockctl.FaultOversize, Size: 5 << 20}},
	{"applied, answer dropped", mockctl.Fault{Kind: mockctl.FaultDropAfterApply}},
}

// TestFaultMatrix injects every fault on both upstream queries through the real core and plugin
// process, and records per cell the API answer, the status fields, whether the login token
// survived, and whether the next healthy call recovers. A lost token must always be reported.
func TestFaultMatrix(t *testing.T) {
	e := newEnv(t, 1, mockctl.Options{})
	var table []string
	for _, op := range []mockctl.Op{mockctl.OpAccessToken, mockctl.OpRefresh} {
		for _, fc := range faultCases {
			t.Run(string(op)+"/"+fc.name, func(t *testing.T) {
				e.mock.ClearFaults()
				login := e.mock.IssueLoginToken()
				if _, err := e.client().Logical().Write(mountPath+"/config", map[string]interface{}{
					"login_token": login, "url": e.mockURL, "request_timeout": 2,
					"access_token_min_ttl": "15m", "verify_connection": false,
				}); err != nil {
					t.Fatal(err)
				}
				f := fc.fault
				var err error
				if op == mockctl.OpAccessToken {
					e.mock.InjectFault(op, f) // persistent: every bounded retry meets it
					_, err = e.client().Logical().Read(mountPath + "/token")
				} else {
					f.Times = 1
					e.mock.InjectFault(op, f)
					_, err = e.client().Logical().Write(mountPath+"/rotate-root", nil)
				}
				if err == nil {
					t.Fatal("the fault went unnoticed")
				}
				status, msg := statusOf(err), apiMessage(err)
				if status < 400 || len(msg) < 20 {
					t.Fatalf("answer %d %q is not an error a person understands", status, msg)
				}
				cfg := e.readConfig()
				lastErr, _ := cfg["last_rotation_error"].(string)
				survived := e.mock.LoginTokenValid(login)
				pending := strings.Contains(lastErr, "outcome unknown")
				if !survived && !strings.Contains(lastErr, "LOGIN TOKEN LOST") && !pending {
					t.Fatalf("token lost without last_rotation_error saying so: %q", lastErr)
				}
				if op == mockctl.OpAccessToken && lastErr != "" {
					t.Fatalf("a token-read fault changed rotation status: %q", lastErr)
				}

				e.mock.ClearFaults()
				recovered := "yes"
				if pending {
					// Settling waits out refresh_grace_period; TestUnknownOutcomeSettledAfterGrace
					// covers it. The next row writes a new login token, which starts afresh.
					recovered = "after refresh_grace_period"
				} else if op == mockctl.OpRefresh && survived {
					if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); err != nil {
						t.Fatalf("healthy rotation after the fault failed: %v", err)
					}
					if e.readConfig()["last_rotation_error"] != "" {
						t.Fatal("status not cleared by a healthy rotation")
					}
				}
				if survived {
					e.readToken(e.client())
				} else if !pending {
					recovered = "no: operator writes a new login_token"
					if _, err := e.client().Logical().Read(mountPath + "/token"); statusOf(err) != 502 {
						t.Fatalf("read with a lost token: %v, want 502", err)
					}
				}
				short := lastErr
				if len(short) > 70 {
					short = short[:70] + "…"
				}
				if len(msg) > 90 {
					msg = msg[:90] + "…"
				}
				table = append(table, fmt.Sprintf("| %s | %s | %d %s | %s | %v | %s |", op, fc.name, status, msg, short, survived, recovered))
			})
		}
	}
	t.Logf("fault matrix:\n| query | fault | API answer | last_rotation_error | token survived | next healthy call |\n|---|---|---|---|---|---|\n%s", strings.Join(table, "\n"))
}

// pluginPIDs finds the plugin processes Vault started from binary, by their command lines in
// /proc (no pgrep needed).
func pluginPIDs(t *testing.T, binary string) []int {
	t.Helper()
	dirs, _ := os.ReadDir("/proc")
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if strings.Contains(string(cmdline), binary) { // as pgrep -f matched
			pids = append(pids, pid)
		}
	}
	return pids
}

func killPlugin(t *testing.T, e *env) {
	t.Helper()
	bin := filepath.Join(e.pluginDir, pluginCommand)
	pids := pluginPIDs(t, bin)
	if len(pids) == 0 {
		t.Fatal("no plugin process to kill")
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
}

// TestCrashPoints kills the plugin process, or steps down the active core, at points of the
// rotation protocol that a real process can be stopped at from outside, then checks that the
// next ticks leave the mount healthy or say exactly what happened.
func TestCrashPoints(t *testing.T) {
	cases := []struct {
		name     string
		cores    int
		fault    *mockctl.Fault // how the refresh is held while we crash
		crash    string         // "kill" or "step-down"
		wantLost bool
	}{
		{"kill, no rotation in flight", 1, nil, "kill", false},
		{"kill while refresh in flight, never applied", 1, &mockctl.Fault{Kind: mockctl.FaultHang, Delay: time.Minute, Times: 1}, "kill", false},
		{"kill after inabit applied, before the answer", 1, &mockctl.Fault{Kind: mockctl.FaultHoldAfterApply, Delay: time.Minute, Times: 1}, "kill", true},
		{"step down after inabit applied, before the answer", 3, &mockctl.Fault{Kind: mockctl.FaultHoldAfterApply, Delay: time.Minute, Times: 1}, "step-down", true},
		{"step down while refresh in flight, never applied", 3, &mockctl.Fault{Kind: mockctl.FaultHang, Delay: time.Minute, Times: 1}, "step-down", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.cores, mockctl.Options{})
			// Long enough to hold a refresh open while we crash; unfinished rotations are settled
			// once refresh_grace_period (30 s) has passed.
			e.configure(map[string]interface{}{"request_timeout": 20, "refresh_grace_period": 30})
			login := e.mock.LoginToken()
			active := e.waitActive()

			var wg sync.WaitGroup
			if tc.fault != nil {
				e.mock.InjectFault(mockctl.OpRefresh, *tc.fault)
				wg.Add(1)
				go func() {
					defer wg.Done()
					_, _ = active.Client.Logical().Write(mountPath+"/rotate-root", nil) // its answer is what we crash
				}()
				eventually(t, 20*time.Second, "the refresh to reach inabit", func() bool { return e.mock.Calls(mockctl.OpRefresh) == 1 })
				if tc.fault.Kind == mockctl.FaultHoldAfterApply {
					<-e.mock.Applied()
				}
			}
			switch tc.crash {
			case "kill":
				killPlugin(t, e)
			case "step-down":
				if err := active.Client.Sys().StepDown(); err != nil {
					t.Fatalf("step down: %v", err)
				}
				eventually(t, 60*time.Second, "a new active core", func() bool { return e.waitActive() != active })
			}
			e.mock.ClearFaults() // releases the held answer into a dead or demoted node
			wg.Wait()

			if tc.wantLost {
				e.assertLostReportedThenRecover(t, login, 150*time.Second)
				return
			}
			// Not lost: the mount keeps working and the next rotation succeeds. Vault notices a
			// killed plugin process on the first request after it and restarts it, so that one
			// request may fail with a gRPC error; that is Vault's behaviour, not the plugin's.
			eventually(t, 30*time.Second, "Vault to restart the plugin", func() bool {
				_, err := e.client().Logical().Read(mountPath + "/token")
				return err == nil
			})
			e.assertRotatesCleanly(t)
		})
	}
}

// registerPlugin (re)registers the plugin with extra environment and reloads it, so the next
// request runs a fresh process with that environment.
func (e *env) registerPlugin(t *testing.T, envVars ...string) {
	t.Helper()
	c := e.client()
	if err := c.Sys().RegisterPlugin(&api.RegisterPluginInput{
		Name: pluginName, Type: api.PluginTypeSecrets, Command: pluginCommand, SHA256: pluginSHA, Version: pluginVersion, Env: envVars,
	}); err != nil {
		t.Fatalf("register plugin: %v", err)
	}
	if _, err := c.Sys().ReloadPlugin(&api.ReloadPluginInput{Plugin: pluginName}); err != nil {
		t.Fatalf("reload plugin: %v", err)
	}
}

// TestCrashPointsInsideRotation stops the real plugin process between two statements of the
// rotation protocol (a test-only crash point named by an environment variable set at
// registration), restarts it without the crash point, and checks what the mount says and does.
func TestCrashPointsInsideRotation(t *testing.T) {
	cases := []struct {
		point    string
		wantLost bool
	}{
		{"before-wal", false},
		{"after-wal", false},
		{"after-refresh", true},
		{"after-persist", false},
	}
	for _, tc := range cases {
		t.Run(tc.point, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, 1, mockctl.Options{})
			e.configure(map[string]interface{}{"request_timeout": 5, "refresh_grace_period": 30})
			login := e.mock.LoginToken()
			e.registerPlugin(t, "INABIT_PLUGIN_TEST_CRASH_AT="+tc.point)
			if _, err := e.client().Logical().Write(mountPath+"/rotate-root", nil); err == nil {
				t.Fatal("rotate-root succeeded although the plugin was to die mid-rotation")
			}
			e.registerPlugin(t) // the node comes back, healthy

			if tc.wantLost {
				e.assertLostReportedThenRecover(t, login, 120*time.Second)
				return
			}
			e.readToken(e.client())
			e.assertRotatesCleanly(t)
		})
	}
}

// assertRotatesCleanly: after a crash that lost nothing, the next rotation succeeds (once an
// unfinished one is settled after refresh_grace_period), the status is clean, and no refresh
// ever presented a dead token.
func (e *env) assertRotatesCleanly(t *testing.T) {
	t.Helper()
	var lastErr error
	eventually(t, 90*time.Second, "rotate-root to succeed", func() bool {
		_, lastErr = e.client().Logical().Write(mountPath+"/rotate-root", nil)
		if lastErr != nil && statusOf(lastErr) != 503 {
			t.Fatalf("rotation after the crash: %v", lastErr)
		}
		return lastErr == nil
	}, func() string { return fmt.Sprint(lastErr) })
	if cfg := e.readConfig(); cfg["last_rotation_error"] != "" {
		t.Fatalf("status after recovery: %v", cfg["last_rotation_error"])
	}
	if e.mock.Rejected(mockctl.OpRefresh) != 0 {
		t.Fatal("a refresh presented a dead token")
	}
}

// assertLostReportedThenRecover: inabit killed the login token and Vault never saved its
// successor; the mount must say so, reads must fail pointing at the fix, and the documented
// operator action (a new login_token) must bring it back.
func (e *env) assertLostReportedThenRecover(t *testing.T, login string, within time.Duration) {
	t.Helper()
	if e.mock.LoginTokenValid(login) {
		t.Fatal("test setup: inabit did not apply the refresh")
	}
	eventually(t, within, "the lost token to be reported", func() bool {
		s, err := e.client().Logical().Read(mountPath + "/config")
		return err == nil && s != nil && strings.Contains(fmt.Sprint(s.Data["last_rotation_error"]), "LOGIN TOKEN LOST")
	})
	if _, err := e.client().Logical().Read(mountPath + "/token"); statusOf(err) != 502 || !strings.Contains(apiMessage(err), "login_token") {
		t.Fatalf("token read with a lost token: %v", err)
	}
	e.configure(map[string]interface{}{"login_token": e.mock.IssueLoginToken()})
	e.readToken(e.client())
}
