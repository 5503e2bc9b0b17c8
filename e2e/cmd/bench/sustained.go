package main

// Sustained load (issue 10): short runs hide what a lease costs Vault, because a lease is paid for
// again when it expires (Vault revokes it through the plugin) and meanwhile it sits in memory.
// This runs each read path for several lease lifetimes on one Vault whose mounts cap leases at
// 45 s, and records req/s, Vault's RSS and the live lease count in fixed windows.

import (
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockinabit"
)

type sustainedOpts struct {
	vaultBin, pluginBin, floorBin string
	phase, window                 time.Duration
	clients                       int
	pluginEnv                     []string
	pluginVersion                 string
}

const (
	sustainedLeaseTTL = 45 * time.Second
	// Short access tokens, so that the cache is refilled during a phase and the upstream call
	// count means something: 3-minute tokens served while 2 minutes are left, a 60 s window.
	sustainedAccessTTL = 3 * time.Minute
	sustainedMinTTL    = 2 * time.Minute
	sustainedWarmup    = 2 * time.Second
	// drainWait bounds the wait for a leased phase's leases to be revoked before the next phase.
	drainWait = sustainedLeaseTTL + 3*time.Minute
)

// sustainedEstimate is how long runSustained takes, for the line printed before anything runs.
func sustainedEstimate(o sustainedOpts) time.Duration {
	const phases, leaseFreeWarmups, drains = 5, 3, 1
	return phases*o.phase + leaseFreeWarmups*sustainedWarmup + drains*(sustainedLeaseTTL+30*time.Second) + 20*time.Second
}

func runSustained(o sustainedOpts) *sustainedRun {
	mock := mockinabit.New(mockinabit.Options{AccessTokenTTL: sustainedAccessTTL})
	mockSrv := httptest.NewServer(mock.Handler())
	defer mockSrv.Close()

	dir, err := os.MkdirTemp("", "inabit-sustained-")
	must(err)
	defer os.RemoveAll(dir)
	pluginDir := filepath.Join(dir, "plugins")
	must(os.MkdirAll(pluginDir, 0o755))
	pluginPath := filepath.Join(pluginDir, "vault-plugin-secrets-inabit")
	floorPath := filepath.Join(pluginDir, "floorplugin")
	pluginSHA := copyExec(o.pluginBin, pluginPath)
	floorSHA := copyExec(o.floorBin, floorPath)
	// disable_hostname keeps metric names plain (vault.expire.num_leases).
	must(os.WriteFile(filepath.Join(dir, "server.hcl"), []byte(fmt.Sprintf("plugin_directory = %q\ntelemetry {\n  disable_hostname = true\n}\n", pluginDir)), 0o600))

	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	server := exec.Command(o.vaultBin, "server", "-dev", "-dev-root-token-id=root", "-dev-listen-address="+addr,
		"-config="+filepath.Join(dir, "server.hcl"), "-log-level=warn")
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	must(err)
	defer logFile.Close()
	server.Stdout, server.Stderr = logFile, logFile
	server.Env = withoutVaultEnv()
	must(server.Start())
	defer func() { _ = server.Process.Signal(os.Interrupt); _ = server.Wait() }()
	vaultPID := server.Process.Pid

	cfg := api.DefaultConfig()
	cfg.Address = "http://" + addr
	c, err := api.NewClient(cfg)
	must(err)
	c.SetToken("root")
	waitFor(func() bool { h, err := c.Sys().Health(); return err == nil && !h.Sealed })

	must(c.Sys().RegisterPlugin(&api.RegisterPluginInput{Name: "inabit", Type: api.PluginTypeSecrets, Command: "vault-plugin-secrets-inabit", SHA256: pluginSHA, Version: o.pluginVersion, Env: o.pluginEnv}))
	must(c.Sys().RegisterPlugin(&api.RegisterPluginInput{Name: "floor", Type: api.PluginTypeSecrets, Command: "floorplugin", SHA256: floorSHA}))
	leaseTTL := sustainedLeaseTTL.String()
	must(c.Sys().Mount("inabit", &api.MountInput{Type: "inabit", Config: api.MountConfigInput{MaxLeaseTTL: leaseTTL, PluginVersion: o.pluginVersion}}))
	must(c.Sys().Mount("floor", &api.MountInput{Type: "floor", Config: api.MountConfigInput{MaxLeaseTTL: leaseTTL}}))
	// KV never leases, but tune it alike so that every mount is configured the same.
	must(c.Sys().TuneMount("secret", api.MountConfigInput{MaxLeaseTTL: leaseTTL}))
	_, err = c.Logical().Write("inabit/config", map[string]interface{}{
		"login_token": mock.LoginToken(), "url": mockSrv.URL, "access_token_min_ttl": sustainedMinTTL.String(),
	})
	must(err)
	_, err = c.Logical().Write("secret/data/bench", map[string]interface{}{"data": map[string]interface{}{"access_token": "constant"}})
	must(err)

	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	base := "http://" + addr + "/v1/"
	res := &sustainedRun{
		Started: time.Now(), Phase: o.phase, Window: o.window, Clients: o.clients, LeaseTTL: sustainedLeaseTTL,
		AccessTokenTTL: sustainedAccessTTL, MinTTL: sustainedMinTTL,
		LeaseSource: "`vault.expire.num_leases` from `GET sys/metrics`, Vault's in-memory metrics sink, which reports the last finished 10 s interval, so it trails by up to 10 s; " +
			"after each leased phase, `LIST sys/leases/lookup/<mount>/token/` counts that path's leases exactly",
		PluginPeak: -1, FloorPeak: -1,
	}
	leases := func() int64 { return liveLeases(hc, base) }
	// Lease-free paths first: nothing expires under them.
	phases := []sustainedPhase{
		{Name: phaseKV, Path: "secret/data/bench"},
		{Name: phaseFloorStatic, Path: "floor/static-token"},
		{Name: phaseStatic, Path: "inabit/static-token"},
		{Name: phaseToken, Path: "inabit/token", Leased: true},
		{Name: phaseFloorLeased, Path: "floor/token", Leased: true},
	}
	cacheWindow := sustainedAccessTTL - sustainedMinTTL
	for i, p := range phases {
		if !p.Leased {
			// Warm the plugin process and connections; a lease-free warm-up leaves nothing behind.
			// The leased phases follow lease-free reads of the same plugins and need none.
			run0(hc, base+p.Path, o.clients, sustainedWarmup)
		}
		log.Printf("sustained: %s for %s with %d clients", p.Name, o.phase, o.clients)
		callsBefore := mock.Calls(mockinabit.OpAccessToken)
		p.Windows = measureSustained(hc, base+p.Path, o, func() (int64, int64) {
			return procKB(vaultPID, "VmRSS"), leases()
		})
		p.LeasesListed = -1
		if strings.HasPrefix(p.Path, "inabit/") {
			p.UpstreamCalls = mock.Calls(mockinabit.OpAccessToken) - callsBefore
			// Each cache window spanned, plus the one the phase may start in the middle of.
			p.MaxUpstreamCalls = int(o.phase/cacheWindow) + 1
		}
		if p.Leased {
			p.LeasesListed = listLeases(c, p.Path)
			if i < len(phases)-1 {
				p.Drain = drainLeases(leases)
			}
		}
		for _, w := range p.Windows {
			log.Printf("sustained: %-20s %5s %7.0f req/s  Vault RSS %s MB  leases %s  errors %d", p.Name, w.End, w.RPS, mb(w.VaultRSS), leaseCell(w.Leases), w.Errors)
		}
		phases[i] = p
	}
	res.Phases = phases
	res.PluginPeak = procKB(pluginPID(pluginPath), "VmHWM")
	res.FloorPeak = procKB(pluginPID(floorPath), "VmHWM")
	return res
}

// run0 is run without the result: a warm-up.
func run0(hc *http.Client, url string, clients int, d time.Duration) { _ = run(hc, url, clients, d) }

// measureSustained keeps o.clients readers busy for o.phase and samples every o.window.
func measureSustained(hc *http.Client, url string, o sustainedOpts, sample func() (rss, leases int64)) []sustainedWindow {
	var ops, errs atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := 0; i < o.clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := get(hc, url); err != nil {
					errs.Add(1)
				}
				ops.Add(1)
			}
		}()
	}
	n := int(o.phase / o.window)
	windows := make([]sustainedWindow, 0, n)
	start := time.Now()
	last, lastOps, lastErrs := start, int64(0), int64(0)
	ticker := time.NewTicker(o.window)
	for len(windows) < n {
		<-ticker.C
		now, cur, curErrs := time.Now(), ops.Load(), errs.Load()
		rss, leases := sample()
		windows = append(windows, sustainedWindow{
			End:      time.Duration(len(windows)+1) * o.window,
			RPS:      float64(cur-lastOps) / now.Sub(last).Seconds(),
			Errors:   curErrs - lastErrs,
			VaultRSS: rss,
			Leases:   leases,
		})
		last, lastOps, lastErrs = now, cur, curErrs
	}
	ticker.Stop()
	close(stop)
	wg.Wait()
	return windows
}

// liveLeases is vault.expire.num_leases from Vault's in-memory metrics, or -1.
func liveLeases(hc *http.Client, base string) int64 {
	req, err := http.NewRequest(http.MethodGet, base+"sys/metrics", nil)
	if err != nil {
		return -1
	}
	req.Header.Set("X-Vault-Token", "root")
	res, err := hc.Do(req)
	if err != nil {
		return -1
	}
	defer res.Body.Close()
	var summary struct {
		Gauges []struct {
			Name  string
			Value float64
		}
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&summary) != nil {
		return -1
	}
	for _, g := range summary.Gauges {
		if strings.HasSuffix(g.Name, "expire.num_leases") {
			return int64(g.Value)
		}
	}
	return -1
}

// listLeases counts path's leases exactly, or -1.
func listLeases(c *api.Client, path string) int {
	s, err := c.Logical().List("sys/leases/lookup/" + strings.TrimSuffix(path, "/") + "/")
	if err != nil {
		log.Printf("sustained: listing leases of %s: %v", path, err)
		return -1
	}
	if s == nil {
		return 0
	}
	keys, _ := s.Data["keys"].([]interface{})
	return len(keys)
}

// drainLeases waits until Vault reports no live leases (or drainWait passes) and says how long it
// took; the metric trails by up to 10 s, so this overstates it by as much.
func drainLeases(leases func() int64) time.Duration {
	start := time.Now()
	for time.Since(start) < drainWait {
		if leases() == 0 {
			return time.Since(start)
		}
		time.Sleep(2 * time.Second)
	}
	log.Printf("sustained: leases still live after %s; going on", drainWait)
	return time.Since(start)
}

// procKB is a "<n> kB" field of /proc/<pid>/status, or -1.
func procKB(pid int, field string) int64 {
	if pid <= 0 {
		return -1
	}
	f := strings.Fields(procField(pid, field))
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return -1
	}
	return n
}
