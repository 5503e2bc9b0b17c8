package main

// Many mounts on one Vault (issue 19): many API users means one mount each, and Vault runs every
// mount of a plugin in one process. On one Vault dev server this grows the inabit plugin and the
// floor plugin to each mount count in turn (one mock API user per inabit mount) and records the
// plugin processes, their RSS and Vault's, the time to enable and configure the mounts and the
// CPU spent idle; then read throughput with each read going to a random mount; then the
// rotation herd: every inabit mount's rotation_schedule names the same minute, with a
// rotation_window so that the plugin spreads them, against a mock that rate-limits.

import (
	"fmt"
	"log"
	"math/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/vault/api"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

type mountsOpts struct {
	vaultBin, pluginBin, floorBin, mockBin string
	counts                                 []int
	idle                                   time.Duration // idle CPU window per mount count
	duration                               time.Duration // one read run
	reps                                   int
	clients                                int
	herd                                   bool
	herdRateLimit                          int // calls per second the mock allows during the herd
	herdLead                               time.Duration
	pluginEnv                              []string
	pluginVersion                          string
}

const (
	// mountsAccessTTL keeps every mount's cached access token good for the whole stage, so that
	// the read runs measure the read path, not refills.
	mountsAccessTTL = 2 * time.Hour
	// mountsSettle lets a process finish what the last request started before its RSS is read.
	mountsSettle = 5 * time.Second
	// herdWindow is the rotation_window the herd's mounts are given: the plugin spreads a
	// schedule's rotations over half of it, 15 minutes at most.
	herdWindow = time.Hour
	herdSpread = 15 * time.Minute
)

// mountsEstimate is how long runMounts takes, for the line printed before anything runs.
func mountsEstimate(o mountsOpts) time.Duration {
	most := 0
	for _, n := range o.counts {
		most = max(most, n)
	}
	d := time.Duration(len(o.counts))*(o.idle+2*mountsSettle) + time.Duration(most)*100*time.Millisecond +
		time.Duration(3*len(o.counts)*o.reps)*o.duration + 30*time.Second
	if o.herd {
		d += o.herdLead + herdSpread + 3*time.Minute
	}
	return d
}

func inabitMount(i int) string { return fmt.Sprintf("inabit-%04d", i+1) }
func floorMount(i int) string  { return fmt.Sprintf("floor-%04d", i+1) }

// loadAvg is /proc/loadavg's three load averages, or zeros.
func loadAvg() [3]float64 {
	var l [3]float64
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return l
	}
	f := strings.Fields(string(raw))
	for i := 0; i < 3 && i < len(f); i++ {
		l[i], _ = strconv.ParseFloat(f[i], 64)
	}
	return l
}

// countProcs counts the processes whose command line starts with binary.
func countProcs(binary string) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return -1
	}
	n := 0
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		if first, _, _ := strings.Cut(string(cmdline), "\x00"); first == binary {
			n++
		}
	}
	return n
}

func runMounts(o mountsOpts) *mountsRun {
	most := 0
	for _, n := range o.counts {
		most = max(most, n)
	}
	mock, err := mockctl.Start(o.mockBin, mockctl.Options{AccessTokenTTL: mountsAccessTTL})
	must(err)
	defer mock.Close()
	users := mock.CreateUsers(most)
	if len(users) != most {
		log.Fatalf("mounts: the mock made %d users, want %d", len(users), most)
	}

	dir, err := os.MkdirTemp("", "inabit-mounts-")
	must(err)
	defer os.RemoveAll(dir)
	pluginDir := filepath.Join(dir, "plugins")
	must(os.MkdirAll(pluginDir, 0o755))
	pluginPath := filepath.Join(pluginDir, "vault-plugin-secrets-inabit")
	floorPath := filepath.Join(pluginDir, "floorplugin")
	pluginSHA := copyExec(o.pluginBin, pluginPath)
	floorSHA := copyExec(o.floorBin, floorPath)
	must(os.WriteFile(filepath.Join(dir, "server.hcl"), []byte(fmt.Sprintf("plugin_directory = %q\n", pluginDir)), 0o600))

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

	res := &mountsRun{Started: time.Now(), Idle: o.idle, Clients: o.clients, Duration: o.duration, Reps: o.reps,
		PluginEnv: strings.Join(o.pluginEnv, ",")}
	time.Sleep(mountsSettle)
	res.VaultRSSBefore = procKB(vaultPID, "VmRSS")

	// Pass 1: grow both plugins to each mount count; memory, time, processes, idle CPU.
	prev := 0
	for _, n := range o.counts {
		st := mountsStep{N: n}
		start := time.Now()
		for i := prev; i < n; i++ {
			must(c.Sys().Mount(inabitMount(i), &api.MountInput{Type: "inabit", Config: api.MountConfigInput{PluginVersion: o.pluginVersion}}))
		}
		st.InabitEnable = time.Since(start)
		start = time.Now()
		for i := prev; i < n; i++ {
			_, err := c.Logical().Write(inabitMount(i)+"/config", map[string]interface{}{"login_token": users[i].LoginToken, "url": mock.URL()})
			must(err)
		}
		st.InabitConfig = time.Since(start)
		time.Sleep(mountsSettle)
		st.VaultRSSAfterInabit = procKB(vaultPID, "VmRSS")
		start = time.Now()
		for i := prev; i < n; i++ {
			must(c.Sys().Mount(floorMount(i), &api.MountInput{Type: "floor"}))
		}
		st.FloorEnable = time.Since(start)
		time.Sleep(mountsSettle)
		st.VaultRSSAfterFloor = procKB(vaultPID, "VmRSS")
		st.InabitProcs, st.FloorProcs = countProcs(pluginPath), countProcs(floorPath)
		st.InabitRSSNow, st.FloorRSSNow = procKB(findPID(pluginPath), "VmRSS"), procKB(findPID(floorPath), "VmRSS")

		// Idle: nothing but Vault's rollback manager, which calls every mount's periodic
		// function once a minute.
		pPID, fPID := findPID(pluginPath), findPID(floorPath)
		st.LoadBefore = loadAvg()
		p0, f0, v0 := procCPU(pPID), procCPU(fPID), procCPU(vaultPID)
		t0 := time.Now()
		time.Sleep(o.idle)
		st.IdleWindow = time.Since(t0)
		st.InabitCPU, st.FloorCPU, st.VaultCPU = cpuDelta(procCPU(pPID), p0), cpuDelta(procCPU(fPID), f0), cpuDelta(procCPU(vaultPID), v0)
		st.Load = loadAvg()
		st.InabitRSS, st.FloorRSS, st.VaultRSS = procKB(pPID, "VmRSS"), procKB(fPID, "VmRSS"), procKB(vaultPID, "VmRSS")
		st.InabitHWM, st.FloorHWM = procKB(pPID, "VmHWM"), procKB(fPID, "VmHWM")
		log.Printf("mounts: %4d mounts: processes %d/%d, RSS inabit %s floor %s Vault %s MB, enable+config %s/%s, floor enable %s, idle CPU over %s: inabit %.2fs floor %.2fs Vault %.2fs (load %.2f)",
			n, st.InabitProcs, st.FloorProcs, mb(st.InabitRSS), mb(st.FloorRSS), mb(st.VaultRSS), st.InabitEnable.Round(time.Millisecond), st.InabitConfig.Round(time.Millisecond),
			st.FloorEnable.Round(time.Millisecond), st.IdleWindow.Round(time.Second), st.InabitCPU, st.FloorCPU, st.VaultCPU, st.Load[0])
		res.Steps = append(res.Steps, st)
		prev = n
	}

	// Pass 2: read throughput, each read to a random one of the first N mounts, interleaved.
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64, MaxConnsPerHost: 64}}
	base := "http://" + addr + "/v1/"
	urls := func(name func(int) string, n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = base + name(i) + "/static-token"
		}
		return out
	}
	// Warm every mount once: the first read of a mount may fetch its access token.
	for _, u := range append(urls(inabitMount, most), urls(floorMount, most)...) {
		_ = get(hc, u)
	}
	callsBefore := mock.Calls(mockctl.OpAccessToken)
	reads := make([]mountsRead, len(o.counts))
	for rep := 0; rep < o.reps; rep++ {
		for k, n := range o.counts {
			reads[k].N = n
			var in, fl timedSample
			runIn := func() { in = runRandom(hc, urls(inabitMount, n), o.clients, o.duration); in.load = loadAvg()[0] }
			runFl := func() { fl = runRandom(hc, urls(floorMount, n), o.clients, o.duration); fl.load = loadAvg()[0] }
			if rep%2 == 0 { // alternate which goes first, so that neither always follows the other
				runIn()
				runFl()
			} else {
				runFl()
				runIn()
			}
			reads[k].Inabit = append(reads[k].Inabit, in.sample)
			reads[k].Floor = append(reads[k].Floor, fl.sample)
			reads[k].Loads = append(reads[k].Loads, in.load, fl.load)
			// Then both at once, half the clients each: the machine's drift between the runs
			// above, minutes apart on a shared machine, is the same for both here.
			var pin, pfl timedSample
			var wg sync.WaitGroup
			wg.Add(2)
			go func() { defer wg.Done(); pin = runRandom(hc, urls(inabitMount, n), o.clients/2, o.duration) }()
			go func() { defer wg.Done(); pfl = runRandom(hc, urls(floorMount, n), o.clients/2, o.duration) }()
			wg.Wait()
			reads[k].PairRatios = append(reads[k].PairRatios, pin.rps/max(pfl.rps, 1))
			reads[k].PairErrors += pin.errors + pfl.errors
			reads[k].Loads = append(reads[k].Loads, loadAvg()[0])
			log.Printf("mounts: rep %d, reads over %4d mounts: inabit %6.0f req/s (%d errors), floor %6.0f req/s (%d errors); at once %5.0f / %5.0f req/s; load %.2f",
				rep+1, n, in.rps, in.errors, fl.rps, fl.errors, pin.rps, pfl.rps, loadAvg()[0])
		}
	}
	res.Reads = reads
	res.ReadUpstreamCalls = mock.Calls(mockctl.OpAccessToken) - callsBefore

	if o.herd {
		res.Herd = runHerd(c, mock, o, pluginPath, vaultPID, most)
	}
	return res
}

// timedSample is a sample with the load average when it ended.
type timedSample struct {
	sample
	load float64
}

// runRandom is run with each read going to a random one of urls.
func runRandom(c *http.Client, urls []string, conc int, d time.Duration) timedSample {
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	deadline := time.Now().Add(d)
	var wg sync.WaitGroup
	begin := time.Now()
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			local := make([]time.Duration, 0, 4096)
			localErrs := 0
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := get(c, urls[rng.Intn(len(urls))]); err != nil {
					localErrs++
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, local...)
			errs += localErrs
			mu.Unlock()
		}(time.Now().UnixNano() + int64(i))
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
	return timedSample{sample: sample{rps: float64(len(lat)) / elapsed.Seconds(), p50: pct(0.50), p95: pct(0.95), p99: pct(0.99), errors: errs, ops: len(lat)}}
}

// runHerd gives the first n inabit mounts one rotation_schedule slot a few minutes ahead, with a
// rotation_window so that the plugin spreads them, turns the mock's rate limit on, and follows
// the rotations until every mount has rotated or the spread has passed.
func runHerd(c *api.Client, mock *mockctl.Mock, o mountsOpts, pluginPath string, vaultPID, n int) *herdResult {
	h := &herdResult{Mounts: n, Window: herdWindow, RateLimit: o.herdRateLimit}
	// The slot: a whole minute at least o.herdLead from now, so that every write lands before it
	// (a mount whose schedule is written after the slot waits for the next day's).
	h.Slot = time.Now().UTC().Add(o.herdLead).Truncate(time.Minute).Add(time.Minute)
	h.Schedule = fmt.Sprintf("%d %d * * *", h.Slot.Minute(), h.Slot.Hour())
	mock.ResetCalls()
	mock.SetRateLimit(o.herdRateLimit)
	defer mock.SetRateLimit(0)
	start := time.Now()
	for i := 0; i < n; i++ {
		_, err := c.Logical().Write(inabitMount(i)+"/config", map[string]interface{}{"rotation_schedule": h.Schedule, "rotation_window": herdWindow.String()})
		must(err)
	}
	h.WriteTime = time.Since(start)
	h.WritesDone = time.Now()
	// Where each mount's rotation is planned: the slot plus the plugin's spread.
	for i := 0; i < n; i++ {
		s, err := c.Logical().Read(inabitMount(i) + "/config")
		must(err)
		at, _ := time.Parse(time.RFC3339, fmt.Sprint(s.Data["next_rotation_at"]))
		h.Planned = append(h.Planned, at)
	}
	sort.Slice(h.Planned, func(i, j int) bool { return h.Planned[i].Before(h.Planned[j]) })
	last := h.Planned[len(h.Planned)-1]
	log.Printf("mounts: herd: %d mounts on %q (slot %s UTC), written in %s; planned %s .. %s; mock rate limit %d calls/s",
		n, h.Schedule, h.Slot.Format("15:04"), h.WriteTime.Round(time.Millisecond), h.Planned[0].Format("15:04:05"), last.Format("15:04:05"), o.herdRateLimit)

	pPID := findPID(pluginPath)
	p0, v0 := procCPU(pPID), procCPU(vaultPID)
	h.LoadStart = loadAvg()
	deadline := last.Add(3 * time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(15 * time.Second)
		cn := mock.Counts()
		log.Printf("mounts: herd: %d refreshes, %d refused (429), peak %d in flight, load %.2f", cn.Calls[mockctl.OpRefresh], cn.Limited[mockctl.OpRefresh]+cn.Limited[mockctl.OpAccessToken], cn.PeakInFlight[mockctl.OpRefresh], loadAvg()[0])
		if cn.Calls[mockctl.OpRefresh] >= n && time.Now().After(last) {
			// Every refresh has been sent; one more tick lets the last verifications finish.
			time.Sleep(70 * time.Second)
			break
		}
	}
	h.Ended = time.Now()
	h.PluginCPU, h.VaultCPU = cpuDelta(procCPU(pPID), p0), cpuDelta(procCPU(vaultPID), v0)
	h.CPUWindow = h.Ended.Sub(h.WritesDone)
	h.Load = loadAvg()

	cn := mock.Counts()
	h.Refreshes, h.RefreshRejected = cn.Calls[mockctl.OpRefresh], cn.Rejected[mockctl.OpRefresh]
	h.AccessCalls, h.AccessRejected = cn.Calls[mockctl.OpAccessToken], cn.Rejected[mockctl.OpAccessToken]
	h.Limited = cn.Limited[mockctl.OpRefresh] + cn.Limited[mockctl.OpAccessToken]
	h.PeakRefreshes, h.PeakAccess = cn.PeakInFlight[mockctl.OpRefresh], cn.PeakInFlight[mockctl.OpAccessToken]
	for _, u := range mock.Users() {
		if u.Refreshes == 1 && u.Live {
			h.UsersRotatedOnce++
		}
	}
	h.PerMinute, h.PeakCallsPerSecond, h.PeakRefreshesPerSecond = herdMinutes(mock.History(), h.Slot)
	for i := 0; i < n; i++ {
		s, err := c.Logical().Read(inabitMount(i) + "/config")
		must(err)
		d := s.Data
		lost, _ := d["login_token_lost"].(bool)
		rotated := fmt.Sprint(d["last_rotated_at"])
		at, _ := time.Parse(time.RFC3339, rotated)
		switch {
		case lost:
			h.Lost++
		case fmt.Sprint(d["last_rotation_error"]) != "":
			h.WithError++
		case !at.IsZero() && !at.Before(h.Slot):
			h.Rotated++
		}
	}
	log.Printf("mounts: herd: %d of %d rotated, %d lost, %d with an error, %d refused (429), peak %d refreshes in flight, peak %d calls in a second",
		h.Rotated, n, h.Lost, h.WithError, h.Limited, h.PeakRefreshes, h.PeakCallsPerSecond)
	return h
}

// herdMinutes buckets the mock's per-second counts into minutes from the slot, and finds the
// busiest second: all calls that reached the mock, and refreshes applied.
func herdMinutes(hist mockctl.History, slot time.Time) (per []herdMinute, peakCalls, peakApplied int) {
	from := slot.Unix()
	byMinute := map[int64]*herdMinute{}
	var lastMinute int64 = -1
	add := func(secs map[int64]int, field func(*herdMinute) *int) {
		for sec, k := range secs {
			m := (sec - from) / 60
			if sec < from {
				m = -1 // before the slot: a rotation too early
			}
			hm := byMinute[m]
			if hm == nil {
				hm = &herdMinute{Minute: int(m)}
				byMinute[m] = hm
			}
			*field(hm) += k
			lastMinute = max(lastMinute, m)
		}
	}
	add(hist.Calls[mockctl.OpRefresh], func(h *herdMinute) *int { return &h.RefreshCalls })
	add(hist.RefreshesApplied, func(h *herdMinute) *int { return &h.RefreshesApplied })
	add(hist.Calls[mockctl.OpAccessToken], func(h *herdMinute) *int { return &h.AccessCalls })
	add(hist.Limited[mockctl.OpRefresh], func(h *herdMinute) *int { return &h.Refused })
	add(hist.Limited[mockctl.OpAccessToken], func(h *herdMinute) *int { return &h.Refused })
	seconds := map[int64]int{}
	for _, op := range []mockctl.Op{mockctl.OpRefresh, mockctl.OpAccessToken} {
		for sec, k := range hist.Calls[op] {
			seconds[sec] += k
		}
	}
	for _, k := range seconds {
		peakCalls = max(peakCalls, k)
	}
	for _, k := range hist.RefreshesApplied {
		peakApplied = max(peakApplied, k)
	}
	for m := int64(-1); m <= lastMinute; m++ {
		if hm := byMinute[m]; hm != nil {
			per = append(per, *hm)
		} else if m >= 0 {
			per = append(per, herdMinute{Minute: int(m)})
		}
	}
	return per, peakCalls, peakApplied
}
