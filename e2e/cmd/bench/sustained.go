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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

type sustainedOpts struct {
	vaultBin, pluginBin, floorBin, mockBin string
	phase, window                          time.Duration
	clients                                int
	pluginEnv                              []string
	pluginVersion                          string
	pairsOnly                              bool
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
	const phases, pairs, leaseFreeWarmups, drains = 5, 2, 3 + 2*2, 2
	return (phases+pairs)*o.phase + leaseFreeWarmups*sustainedWarmup + drains*(sustainedLeaseTTL+30*time.Second) + 20*time.Second
}

func runSustained(o sustainedOpts) *sustainedRun {
	mock, err := mockctl.Start(o.mockBin, mockctl.Options{AccessTokenTTL: sustainedAccessTTL})
	must(err)
	defer mock.Close()

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
		"login_token": mock.LoginToken(), "url": mock.URL(), "access_token_min_ttl": sustainedMinTTL.String(),
	})
	must(err)
	_, err = c.Logical().Write("secret/data/bench", map[string]interface{}{"data": map[string]interface{}{"access_token": "constant"}})
	must(err)

	// The timeout keeps one stuck read from stalling a client for the rest of a phase; it counts
	// as an error.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	base := "http://" + addr + "/v1/"
	res := &sustainedRun{
		Started: time.Now(), Phase: o.phase, Window: o.window, Clients: o.clients, LeaseTTL: sustainedLeaseTTL,
		AccessTokenTTL: sustainedAccessTTL, MinTTL: sustainedMinTTL,
		LeaseSource: "`vault.expire.num_leases` from `GET sys/metrics`, Vault's in-memory metrics sink, which reports the last finished 10 s interval, so it trails by up to 10 s; " +
			"after each leased phase, `LIST sys/leases/lookup/<mount>/token/` counts that path's leases exactly",
		PluginPeak: -1, FloorPeak: -1, ShortPeak: -1, ShortFloorPeak: -1,
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
	if o.pairsOnly {
		phases = nil
	}
	cacheWindow := sustainedAccessTTL - sustainedMinTTL
	upstreamBudget := func(p *sustainedPhase, callsBefore int) {
		if strings.HasPrefix(p.Path, "inabit/") {
			p.UpstreamCalls = mock.Calls(mockctl.OpAccessToken) - callsBefore
			// Each cache window spanned, plus the one the phase may start in the middle of.
			p.MaxUpstreamCalls = int(o.phase/cacheWindow) + 1
		}
	}
	pluginPIDs := map[string]int{}
	sample := func() procSample {
		for _, bin := range []string{pluginPath, floorPath} {
			if pluginPIDs[bin] <= 0 {
				pluginPIDs[bin] = findPID(bin)
			}
		}
		return procSample{
			rss: procKB(vaultPID, "VmRSS"), leases: leases(),
			vaultCPU: procCPU(vaultPID), pluginCPU: procCPU(pluginPIDs[pluginPath]), floorCPU: procCPU(pluginPIDs[floorPath]), benchCPU: procCPU(os.Getpid()),
		}
	}
	for i, p := range phases {
		if !p.Leased {
			// Warm the plugin process and connections; a lease-free warm-up leaves nothing behind.
			// The leased phases follow lease-free reads of the same plugins and need none.
			run0(hc, base+p.Path, o.clients, sustainedWarmup)
		}
		log.Printf("sustained: %s for %s with %d clients", p.Name, o.phase, o.clients)
		callsBefore := mock.Calls(mockctl.OpAccessToken)
		p.Windows = measureSustained(hc, []string{base + p.Path}, o, sample)[0]
		p.LeasesListed = -1
		upstreamBudget(&p, callsBefore)
		if p.Leased {
			p.LeasesListed = listLeases(c, p.Path)
			// Every leased run after this one starts with no lease left.
			p.Drain = drainLeases(leases)
		}
		for _, w := range p.Windows {
			log.Printf("sustained: %-20s %5s %7.0f req/s  Vault RSS %s MB  leases %s  errors %d", p.Name, w.End.Round(time.Second), w.RPS, mb(w.VaultRSS), leaseCell(w.Leases), w.Errors)
		}
		phases[i] = p
	}
	res.Phases = phases

	// Paired runs: each inabit path and its floor at once, half the clients each, so that every
	// window compares them on the same Vault at the same moment (heap size, lease expiries and the
	// machine's noise alike). The runs above take turns, and turns minutes apart differ by more
	// than the 10 % the targets allow.
	pairs := []sustainedPair{
		{A: sustainedPhase{Name: phaseStatic, Path: "inabit/static-token"}, B: sustainedPhase{Name: phaseFloorStatic, Path: "floor/static-token"}},
		{A: sustainedPhase{Name: phaseToken, Path: "inabit/token", Leased: true}, B: sustainedPhase{Name: phaseFloorLeased, Path: "floor/token", Leased: true}},
	}
	for i, pr := range pairs {
		// Warm both plugin processes with lease-free reads, which leave nothing behind.
		run0(hc, base+"inabit/static-token", o.clients, sustainedWarmup)
		run0(hc, base+"floor/static-token", o.clients, sustainedWarmup)
		if pr.A.Leased {
			// Counted, not assumed: the leased pair must start on a Vault with no lease left.
			pr.LeasesBefore = listLeases(c, pr.A.Path) + listLeases(c, pr.B.Path)
		}
		log.Printf("sustained: %s and %s at once for %s with %d clients each", pr.A.Name, pr.B.Name, o.phase, o.clients/2)
		callsBefore := mock.Calls(mockctl.OpAccessToken)
		ws := measureSustained(hc, []string{base + pr.A.Path, base + pr.B.Path}, o, sample)
		pr.A.Windows, pr.B.Windows = ws[0], ws[1]
		pr.A.LeasesListed, pr.B.LeasesListed = -1, -1
		upstreamBudget(&pr.A, callsBefore)
		if pr.A.Leased {
			pr.A.LeasesListed, pr.B.LeasesListed = listLeases(c, pr.A.Path), listLeases(c, pr.B.Path)
		}
		for w := range pr.A.Windows {
			a, b := pr.A.Windows[w], pr.B.Windows[w]
			log.Printf("sustained: pair %5s %-20s %6.0f req/s  %-16s %6.0f req/s  ratio %.3f  leases %s", a.End.Round(time.Second), pr.A.Name, a.RPS, pr.B.Name, b.RPS, a.RPS/max(b.RPS, 1), leaseCell(a.Leases))
		}
		pairs[i] = pr
	}
	res.Pairs = pairs
	res.PluginPeak = procKB(pluginPID(pluginPath), "VmHWM")
	res.FloorPeak = procKB(pluginPID(floorPath), "VmHWM")
	return res
}

// run0 is run without the result: a warm-up.
func run0(hc *http.Client, url string, clients int, d time.Duration) { _ = run(hc, url, clients, d) }

// procSample is what measureSustained records at each window's end besides the read counts.
type procSample struct {
	rss, leases                             int64
	vaultCPU, pluginCPU, floorCPU, benchCPU float64
}

// cpuDelta is cur - prev, or -1 when either is unknown.
func cpuDelta(cur, prev float64) float64 {
	if cur < 0 || prev < 0 {
		return -1
	}
	return cur - prev
}

// measureSustained keeps o.clients readers busy for o.phase, split evenly over urls, and samples
// every o.window: one list of windows per url, sharing the Vault-wide RSS, lease and CPU samples.
// Only successful reads count as served.
func measureSustained(hc *http.Client, urls []string, o sustainedOpts, sample func() procSample) [][]sustainedWindow {
	served := make([]atomic.Int64, len(urls))
	errs := make([]atomic.Int64, len(urls))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	perURL := max(o.clients/len(urls), 1)
	prev := sample()
	start := time.Now()
	for u := range urls {
		for i := 0; i < perURL; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					if err := get(hc, urls[u]); err != nil {
						errs[u].Add(1)
					} else {
						served[u].Add(1)
					}
				}
			}()
		}
	}
	n := int(o.phase / o.window)
	windows := make([][]sustainedWindow, len(urls))
	lastServed, lastErrs := make([]int64, len(urls)), make([]int64, len(urls))
	last := start
	ticker := time.NewTicker(o.window)
	for k := 1; k <= n; k++ {
		<-ticker.C
		// Counts first, right at the window's end; the samples (an HTTP call through the loaded
		// Vault, /proc reads) come after and must not stretch the window.
		now := time.Now()
		cur, curErrs := make([]int64, len(urls)), make([]int64, len(urls))
		for u := range urls {
			cur[u], curErrs[u] = served[u].Load(), errs[u].Load()
		}
		smp := sample()
		for u := range urls {
			windows[u] = append(windows[u], sustainedWindow{
				End:       now.Sub(start),
				RPS:       float64(cur[u]-lastServed[u]) / now.Sub(last).Seconds(),
				Served:    cur[u] - lastServed[u],
				Errors:    curErrs[u] - lastErrs[u],
				VaultRSS:  smp.rss,
				Leases:    smp.leases,
				VaultCPU:  cpuDelta(smp.vaultCPU, prev.vaultCPU),
				PluginCPU: cpuDelta(smp.pluginCPU, prev.pluginCPU),
				FloorCPU:  cpuDelta(smp.floorCPU, prev.floorCPU),
				BenchCPU:  cpuDelta(smp.benchCPU, prev.benchCPU),
			})
			lastServed[u], lastErrs[u] = cur[u], curErrs[u]
		}
		last, prev = now, smp
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
	return kbOf(procField(pid, field))
}
