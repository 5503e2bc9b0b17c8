// Command bench measures the inabit plugin inside a real Vault, side by side with what Vault
// itself costs: a floor plugin (gRPC hop + lease, nothing else), a KV v2 read and sys/health.
// With -sustained it then loads each read path for several lease lifetimes on a fresh Vault
// (sustained.go). It prints a Markdown report and writes it to -out. Run it with `make bench`.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

type scenario struct {
	name, path string
	mock       bool // counts upstream calls
}

type sample struct {
	rps                        float64
	p50, p95, p99              time.Duration
	errors, upstreamCalls, ops int
}

func main() {
	vaultBin := flag.String("vault-bin", "", "real vault binary")
	pluginBin := flag.String("plugin-bin", "", "vault-plugin-secrets-inabit binary")
	floorBin := flag.String("floor-bin", "", "floor plugin binary")
	mockBin := flag.String("mock-bin", "", "mock-inabit binary (go build -o bin/mock-inabit ./internal/cmd/mock-inabit in the plugin's module)")
	goBench := flag.String("go-bench", "", "file with `go test -bench` output to include")
	out := flag.String("out", "bench/RESULTS.md", "where to write the report")
	duration := flag.Duration("duration", 3*time.Second, "length of one measured run")
	reps := flag.Int("reps", 3, "interleaved repetitions of every scenario")
	sustained := flag.Bool("sustained", false, "then measure sustained load on a fresh Vault (sustained.go)")
	sustainedPhase := flag.Duration("sustained-phase", 150*time.Second, "sustained load per read path; at least 3 lease lifetimes (3 x 45s)")
	sustainedWindow := flag.Duration("sustained-window", 10*time.Second, "sustained load measuring window")
	sustainedClients := flag.Int("sustained-clients", 16, "sustained load concurrent clients")
	svgOut := flag.String("svg", "", "where to write the sustained-load plot (default: sustained.svg beside -out)")
	pluginVersion := flag.String("plugin-version", envOr("PLUGIN_VERSION", "v0.2.0"), "the version the plugin binary was built with (make exports PLUGIN_VERSION); Vault registers it under this version")
	pluginEnv := flag.String("plugin-env", "", "comma-separated KEY=VALUE for the inabit plugin's environment, e.g. GOMEMLIMIT=40MiB or GOGC=50, to try other memory settings than the built-in 16 MiB limit")
	pairsOnly := flag.Bool("pairs-only", false, "for quick experiments: only the paired sustained runs (no short runs, no runs alone); prints their report and writes nothing")
	mountsFlag := flag.String("mounts", "", "then the many-mounts stage (mounts.go) on a fresh Vault: comma-separated mount counts, e.g. 1,50,200,500; empty skips it")
	mountsOnly := flag.Bool("mounts-only", false, "run only the many-mounts stage, and replace its section of -out (make bench-mounts)")
	mountsReps := flag.Int("mounts-reps", 5, "many-mounts stage: interleaved read runs (of -duration) per mount count and plugin")
	mountsIdle := flag.Duration("mounts-idle", 2*time.Minute, "many-mounts stage: idle window per mount count for CPU and RSS (Vault ticks each mount once a minute)")
	mountsHerd := flag.Bool("mounts-herd", true, "many-mounts stage: then the rotation herd, every inabit mount on one rotation_schedule slot (about 20 minutes)")
	herdRateLimit := flag.Int("herd-rate-limit", 10, "many-mounts stage: during the herd the mock answers 429 beyond this many calls a second")
	herdLead := flag.Duration("herd-lead", 2*time.Minute, "many-mounts stage: the herd's slot is at least this long after its schedule is written")
	mountsSVGOut := flag.String("mounts-svg", "", "where to write the many-mounts plot (default: mounts.svg beside -out)")
	flag.Parse()
	for name, v := range map[string]string{"-vault-bin": *vaultBin, "-plugin-bin": *pluginBin, "-floor-bin": *floorBin, "-mock-bin": *mockBin} {
		if v == "" {
			log.Fatalf("%s is required", name)
		}
	}
	sOpts := sustainedOpts{vaultBin: *vaultBin, pluginBin: *pluginBin, floorBin: *floorBin, mockBin: *mockBin,
		phase: *sustainedPhase, window: *sustainedWindow, clients: *sustainedClients, pluginEnv: envList(*pluginEnv), pluginVersion: *pluginVersion}
	mOpts := mountsOpts{vaultBin: *vaultBin, pluginBin: *pluginBin, floorBin: *floorBin, mockBin: *mockBin,
		counts: mountCounts(*mountsFlag), idle: *mountsIdle, duration: *duration, reps: *mountsReps, clients: 16,
		herd: *mountsHerd, herdRateLimit: *herdRateLimit, herdLead: *herdLead, pluginEnv: envList(*pluginEnv), pluginVersion: *pluginVersion}
	mountsSVGPath := *mountsSVGOut
	if mountsSVGPath == "" {
		mountsSVGPath = filepath.Join(filepath.Dir(*out), "mounts.svg")
	}
	if *mountsOnly {
		if len(mOpts.counts) == 0 {
			log.Fatal("-mounts-only needs -mounts, e.g. -mounts 1,50,200,500")
		}
		log.Printf("bench: many-mounts stage only, about %s", mountsEstimate(mOpts).Round(time.Minute))
		section := runMountsSection(mOpts, mountsSVGPath)
		fmt.Print(section)
		old, _ := os.ReadFile(*out)
		must(os.MkdirAll(filepath.Dir(*out), 0o755))
		must(os.WriteFile(*out, []byte(replaceMountsSection(string(old), section)), 0o644))
		log.Printf("wrote %s", *out)
		return
	}
	if *pairsOnly {
		sOpts.pairsOnly = true
		fmt.Print(sustainedMarkdown(runSustained(sOpts), "sustained.svg"))
		return
	}
	// Short runs: every scenario at every concurrency and repetition, the warm-ups, and ~75 s of
	// 100k reads plus the stampede.
	total := time.Duration(3*(*reps)*5)*(*duration) + 5*500*time.Millisecond + 90*time.Second
	if len(mOpts.counts) > 0 {
		total += mountsEstimate(mOpts)
	}
	if *sustained {
		if *sustainedPhase < 3*sustainedLeaseTTL {
			log.Printf("warning: -sustained-phase %s is shorter than 3 lease lifetimes (%s)", *sustainedPhase, 3*sustainedLeaseTTL)
		}
		log.Printf("bench: about %s in all (short runs and the many-mounts stage ~%s, sustained load ~%s: 5 read paths alone and 2 pairs at once, each for %s)",
			(total + sustainedEstimate(sOpts)).Round(time.Minute), total.Round(time.Minute), sustainedEstimate(sOpts).Round(time.Minute), *sustainedPhase)
	} else {
		log.Printf("bench: about %s (short runs and the many-mounts stage, if any; -sustained adds ~%s)", total.Round(time.Minute), sustainedEstimate(sOpts).Round(time.Minute))
	}

	mock, err := mockctl.Start(*mockBin, mockctl.Options{})
	must(err)
	defer mock.Close()

	dir, err := os.MkdirTemp("", "inabit-bench-")
	must(err)
	defer os.RemoveAll(dir)
	pluginDir := filepath.Join(dir, "plugins")
	must(os.MkdirAll(pluginDir, 0o755))
	pluginSHA := copyExec(*pluginBin, filepath.Join(pluginDir, "vault-plugin-secrets-inabit"))
	floorSHA := copyExec(*floorBin, filepath.Join(pluginDir, "floorplugin"))
	must(os.WriteFile(filepath.Join(dir, "server.hcl"), []byte(fmt.Sprintf("plugin_directory = %q\n", pluginDir)), 0o600))

	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	server := exec.Command(*vaultBin, "server", "-dev", "-dev-root-token-id=root", "-dev-listen-address="+addr,
		"-config="+filepath.Join(dir, "server.hcl"), "-log-level=warn")
	logFile, err := os.Create(filepath.Join(dir, "server.log"))
	must(err)
	server.Stdout, server.Stderr = logFile, logFile
	server.Env = withoutVaultEnv()
	must(server.Start())
	var stopOnce sync.Once
	stopServer := func() { stopOnce.Do(func() { _ = server.Process.Signal(os.Interrupt); _ = server.Wait() }) }
	defer stopServer()

	cfg := api.DefaultConfig()
	cfg.Address = "http://" + addr
	c, err := api.NewClient(cfg)
	must(err)
	c.SetToken("root")
	waitFor(func() bool { h, err := c.Sys().Health(); return err == nil && !h.Sealed })

	must(c.Sys().RegisterPlugin(&api.RegisterPluginInput{Name: "inabit", Type: api.PluginTypeSecrets, Command: "vault-plugin-secrets-inabit", SHA256: pluginSHA, Version: *pluginVersion, Env: envList(*pluginEnv)}))
	must(c.Sys().RegisterPlugin(&api.RegisterPluginInput{Name: "floor", Type: api.PluginTypeSecrets, Command: "floorplugin", SHA256: floorSHA}))
	mount := func(path, typ, version string) {
		must(c.Sys().Mount(path, &api.MountInput{Type: typ, Config: api.MountConfigInput{MaxLeaseTTL: "15m", PluginVersion: version}}))
	}
	mount("inabit", "inabit", *pluginVersion)
	mount("inabit-fresh", "inabit", *pluginVersion)
	mount("inabit-stampede", "inabit", *pluginVersion)
	mount("floor", "floor", "")
	write := func(path string, data map[string]interface{}) {
		_, err := c.Logical().Write(path, data)
		must(err)
	}
	write("inabit/config", map[string]interface{}{"login_token": mock.LoginToken(), "url": mock.URL()})
	write("inabit-fresh/config", map[string]interface{}{"login_token": mock.LoginToken(), "url": mock.URL(), "access_token_min_ttl": "15m"})
	write("inabit-stampede/config", map[string]interface{}{"login_token": mock.LoginToken(), "url": mock.URL(), "verify_connection": false})
	write("secret/data/bench", map[string]interface{}{"data": map[string]interface{}{"access_token": "constant"}})

	scenarios := []scenario{
		{"inabit/token (cached)", "inabit/token", true},
		{"floor plugin (constant lease)", "floor/token", false},
		{"KV v2 read", "secret/data/bench", false},
		{"sys/health", "sys/health", false},
		{"inabit/token (fresh per read)", "inabit-fresh/token", true},
	}
	httpClient := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, MaxConnsPerHost: 256}}
	base := "http://" + addr + "/v1/"

	// Warm every path (plugin processes, caches, connections) before measuring.
	for _, s := range scenarios {
		run(httpClient, base+s.path, 4, 500*time.Millisecond)
	}

	concurrencies := []int{1, 16, 64}
	results := map[string]map[int][]sample{}
	for _, s := range scenarios {
		results[s.name] = map[int][]sample{}
	}
	for _, conc := range concurrencies {
		for rep := 0; rep < *reps; rep++ {
			for _, s := range scenarios { // interleaved: A B C … A B C …
				before := mock.Calls(mockctl.OpAccessToken)
				smp := run(httpClient, base+s.path, conc, *duration)
				if s.mock {
					smp.upstreamCalls = mock.Calls(mockctl.OpAccessToken) - before
				}
				results[s.name][conc] = append(results[s.name][conc], smp)
				log.Printf("c=%-3d rep=%d %-32s %8.0f req/s p99=%s errors=%d", conc, rep+1, s.name, smp.rps, smp.p99, smp.errors)
			}
		}
	}

	// Peak RSS by stage, to see which one sets each plugin's peak.
	pid := pluginPID(filepath.Join(pluginDir, "vault-plugin-secrets-inabit"))
	floorPID := pluginPID(filepath.Join(pluginDir, "floorplugin"))
	hwmShort, floorHWMShort := procField(pid, "VmHWM"), procField(floorPID, "VmHWM")

	// Cold stampede: 1000 concurrent first reads of a mount whose cache is empty. The floor gets
	// 1000 concurrent reads too, so that both peaks have seen the same burst of gRPC streams.
	before := mock.Calls(mockctl.OpAccessToken)
	stampedeErrors := stampede(httpClient, base+"inabit-stampede/token", 1000)
	stampedeCalls := mock.Calls(mockctl.OpAccessToken) - before
	floorStampedeErrors := stampede(httpClient, base+"floor/token", 1000)
	hwmStampede, floorHWMStampede := procField(pid, "VmHWM"), procField(floorPID, "VmHWM")

	// Plugin process memory and threads around 100k cached reads.
	rssBefore, threadsBefore := procStatus(pid)
	leakRun := runCount(httpClient, base+"inabit/token", 64, 100_000)
	runtime.GC()
	time.Sleep(time.Second)
	rssAfter, threadsAfter := procStatus(pid)
	peak := procField(pid, "VmHWM")
	floorRSS := procField(floorPID, "VmHWM")

	var md strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&md, "# Benchmark results\n\nMeasured %s on `%s`: %d cores (%s), %s, Vault %s, plugin %s. ",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, runtime.NumCPU(), cpuModel(), runtime.Version(), vaultVersion(*vaultBin), *pluginVersion)
	fmt.Fprintf(&md, "Load generator, Vault dev server (in-memory storage), plugin processes and the mock inabit share the machine. "+
		"Each cell is the median of %d interleaved %s runs (A B C … A B C …); the spread is min–max across runs.\n\n", *reps, *duration)
	md.WriteString("## Throughput and latency\n\n| scenario | concurrency | req/s (median) | spread | p50 | p95 | p99 | upstream calls | errors |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, conc := range concurrencies {
		for _, s := range scenarios {
			smps := results[s.name][conc]
			med := median(smps)
			lo, hi := spread(smps)
			calls, errs := 0, 0
			for _, x := range smps {
				calls += x.upstreamCalls
				errs += x.errors
			}
			callCell := "–"
			if s.mock {
				callCell = fmt.Sprintf("%d / %d reads", calls, totalOps(smps))
			}
			fmt.Fprintf(&md, "| %s | %d | %.0f | %.0f–%.0f | %s | %s | %s | %s | %d |\n", s.name, conc, med.rps, lo, hi, ms(med.p50), ms(med.p95), ms(med.p99), callCell, errs)
		}
	}
	md.WriteString("\n## Ratios (cached inabit/token vs the others)\n\n| concurrency | vs floor plugin (throughput) | vs floor (p99) | vs KV v2 (throughput) | floor vs KV v2 |\n|---|---|---|---|---|\n")
	for _, conc := range concurrencies {
		cached := median(results[scenarios[0].name][conc])
		floor := median(results[scenarios[1].name][conc])
		kv := median(results[scenarios[2].name][conc])
		fmt.Fprintf(&md, "| %d | %.2f× | %.2f× | %.2f× | %.2f× |\n", conc, cached.rps/floor.rps, float64(cached.p99)/float64(floor.p99), cached.rps/kv.rps, floor.rps/kv.rps)
	}
	fmt.Fprintf(&md, "\n## Gentleness on inabit\n\n- Cold stampede: 1000 concurrent first reads of an empty cache made **%d** upstream call(s) (%d failed reads).\n", stampedeCalls, stampedeErrors)
	md.WriteString("- Warm cache: upstream calls per scenario are in the table above (one per access-token lifetime).\n")
	fmt.Fprintf(&md, "\n## Plugin process\n\n| | before 100k reads | after 100k reads |\n|---|---|---|\n| RSS | %s | %s |\n| OS threads | %s | %s |\n| peak RSS (VmHWM) | | %s |\n| floor plugin peak RSS, for comparison | | %s |\n\n100k cached reads at concurrency 64 took %s (%d errors). ",
		rssBefore, rssAfter, threadsBefore, threadsAfter, peak, floorRSS, leakRun.elapsed.Round(time.Millisecond), leakRun.errors)
	md.WriteString("Goroutines are not visible from outside the process; `TestNoGoroutineLeakOver100kReads` checks them in-process.\n")
	fmt.Fprintf(&md, "\nPeak RSS (`VmHWM`) by stage, cumulative:\n\n| after | inabit plugin | floor plugin |\n|---|---|---|\n"+
		"| the short runs above | %s | %s |\n| 1000 concurrent reads (inabit: the cold stampede; floor: floor/token, %d failed) | %s | %s |\n| 100k cached reads at concurrency 64 | %s | %s |\n",
		hwmShort, floorHWMShort, floorStampedeErrors, hwmStampede, floorHWMStampede, peak, floorRSS)
	if *pluginEnv != "" {
		fmt.Fprintf(&md, "\nThe inabit plugin ran with `%s` in its environment (`-plugin-env`).\n", *pluginEnv)
	}
	if *sustained {
		// The short runs' Vault would revoke its 15-minute leases in the middle of the sustained
		// phases: stop it first.
		stopServer()
		r := runSustained(sOpts)
		r.ShortPeak, r.ShortFloorPeak = kbOf(peak), kbOf(floorRSS)
		svgPath := *svgOut
		if svgPath == "" {
			svgPath = filepath.Join(filepath.Dir(*out), "sustained.svg")
		}
		must(os.MkdirAll(filepath.Dir(svgPath), 0o755))
		must(os.WriteFile(svgPath, []byte(sustainedSVG(r)), 0o644))
		log.Printf("wrote %s", svgPath)
		md.WriteString("\n" + sustainedMarkdown(r, filepath.Base(svgPath)))
	}
	if len(mOpts.counts) > 0 {
		stopServer()
		md.WriteString("\n" + runMountsSection(mOpts, mountsSVGPath))
	}
	if *goBench != "" {
		if raw, err := os.ReadFile(*goBench); err == nil {
			fmt.Fprintf(&md, "\n## Handler benchmarks (`go test -bench`, in-process, no gRPC)\n\n```\n%s```\n", raw)
		}
	}
	fmt.Print(md.String())
	must(os.MkdirAll(filepath.Dir(*out), 0o755))
	must(os.WriteFile(*out, []byte(md.String()), 0o644))
	log.Printf("wrote %s", *out)
}

func run(c *http.Client, url string, conc int, d time.Duration) sample {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			localErrs := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := get(c, url); err != nil {
					localErrs++
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(begin)
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	pct := func(p float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(p*float64(len(lat))))]
	}
	return sample{rps: float64(len(lat)) / elapsed.Seconds(), p50: pct(0.50), p95: pct(0.95), p99: pct(0.99), errors: errs, ops: len(lat)}
}

// stampede sends n reads of url at once and counts the failures.
func stampede(c *http.Client, url string, n int) int64 {
	var wg sync.WaitGroup
	var errs atomic.Int64
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := get(c, url); err != nil {
				errs.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()
	return errs.Load()
}

// mountCounts parses -mounts: ascending positive counts.
func mountCounts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 || (len(out) > 0 && n <= out[len(out)-1]) {
			log.Fatalf("-mounts %q: want ascending positive mount counts such as 1,50,200,500", s)
		}
		out = append(out, n)
	}
	return out
}

// runMountsSection runs the many-mounts stage, writes its plot to svgPath and returns its
// Markdown section, between the markers replaceMountsSection looks for.
func runMountsSection(o mountsOpts, svgPath string) string {
	r := runMounts(o)
	must(os.MkdirAll(filepath.Dir(svgPath), 0o755))
	must(os.WriteFile(svgPath, []byte(mountsSVG(r)), 0o644))
	log.Printf("wrote %s", svgPath)
	return mountsBegin + "\n" + mountsMarkdown(r, filepath.Base(svgPath)) + mountsEnd + "\n"
}

const (
	mountsBegin = "<!-- many-mounts stage: begin (make bench-mounts replaces this section) -->"
	mountsEnd   = "<!-- many-mounts stage: end -->"
)

// replaceMountsSection puts section in place of the one between the markers in report; without
// them, before the handler benchmarks' section, or at the end.
func replaceMountsSection(report, section string) string {
	if i := strings.Index(report, mountsBegin); i >= 0 {
		if j := strings.Index(report[i:], mountsEnd); j >= 0 {
			rest := strings.TrimPrefix(report[i+j+len(mountsEnd):], "\n")
			return report[:i] + section + rest
		}
	}
	if i := strings.Index(report, "\n## Handler benchmarks"); i >= 0 {
		return report[:i+1] + section + report[i:]
	}
	if report != "" && !strings.HasSuffix(report, "\n") {
		report += "\n"
	}
	if report != "" {
		report += "\n"
	}
	return report + section
}

// envList splits -plugin-env.
func envList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

type countRun struct {
	elapsed time.Duration
	errors  int64
}

func runCount(c *http.Client, url string, conc, total int) countRun {
	var next, errs atomic.Int64
	var wg sync.WaitGroup
	begin := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= int64(total) {
				if err := get(c, url); err != nil {
					errs.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return countRun{elapsed: time.Since(begin), errors: errs.Load()}
}

func get(c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("X-Vault-Token", "root")
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", res.StatusCode)
	}
	return nil
}

func median(s []sample) sample {
	cp := append([]sample(nil), s...)
	sort.Slice(cp, func(i, j int) bool { return cp[i].rps < cp[j].rps })
	return cp[len(cp)/2]
}

func spread(s []sample) (float64, float64) {
	lo, hi := s[0].rps, s[0].rps
	for _, x := range s {
		lo, hi = min(lo, x.rps), max(hi, x.rps)
	}
	return lo, hi
}

func totalOps(s []sample) int {
	n := 0
	for _, x := range s {
		n += x.ops
	}
	return n
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func copyExec(from, to string) string {
	raw, err := os.ReadFile(from)
	must(err)
	must(os.WriteFile(to, raw, 0o755))
	sum := sha256.Sum256(raw)
	return hex.EncodeToString(sum[:])
}

func freePort() int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// withoutVaultEnv is this process's environment for the Vault server, less VAULT_* and the Go
// runtime's tuning variables: plugins inherit Vault's environment, and a GOGC or GOMEMLIMIT left
// in the caller's shell would silently replace what the plugins are measured with (-plugin-env
// sets them on purpose).
func withoutVaultEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "VAULT_") || name == "GOGC" || name == "GOMEMLIMIT" || name == "GODEBUG" || name == "GOMAXPROCS" {
			continue
		}
		env = append(env, kv)
	}
	return env
}

func waitFor(cond func() bool) {
	for i := 0; i < 300; i++ {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	log.Fatal("vault did not start")
}

func pluginPID(binary string) int { return findPID(binary) }

func procStatus(pid int) (rss, threads string) {
	return procField(pid, "VmRSS"), procField(pid, "Threads")
}

func procField(pid int, field string) string {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "n/a"
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, field+":") {
			return strings.Join(strings.Fields(strings.TrimPrefix(line, field+":")), " ")
		}
	}
	return "n/a"
}

func cpuModel() string {
	raw, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.Index(line, ":"); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return "unknown CPU"
}

func vaultVersion(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(bytes.TrimSpace(out)))
	if len(f) >= 2 {
		return strings.TrimSuffix(f[1], ",")
	}
	return "unknown"
}

func must(err error) {
	if err != nil {
		log.Fatal(err)
	}
}

// envOr is the environment variable name, or def when it is unset or empty.
func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// kbOf parses a "<n> kB" /proc field, or -1.
func kbOf(field string) int64 {
	f := strings.Fields(field)
	if len(f) == 0 {
		return -1
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return -1
	}
	return n
}
