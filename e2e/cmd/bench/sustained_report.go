package main

// The sustained-load report: the Markdown section and the SVG plot. Standard library only, and
// no I/O, so that it can be checked on made-up numbers without a Vault.

import (
	"fmt"
	"math"
	"sort"
	"strings"
	"time"
)

// Phase names, in the order they run.
const (
	phaseKV          = "KV v2"
	phaseFloorStatic = "floor, no lease"
	phaseStatic      = "inabit/static-token"
	phaseToken       = "inabit/token"
	phaseFloorLeased = "floor, leased"
)

// sustainedWindow is one measuring window of one phase.
type sustainedWindow struct {
	End      time.Duration // since the phase started, as measured
	RPS      float64       // successful reads per second
	Served   int64         // successful reads in the window
	Errors   int64
	VaultRSS int64 // kB; -1 when unknown
	Leases   int64 // live leases in all of Vault; -1 when unknown
	// CPU seconds used in the window by Vault, the inabit plugin, the floor plugin and the bench
	// process (load generator and mock); -1 when unknown. Shared by the paths of a pair.
	VaultCPU, PluginCPU, FloorCPU, BenchCPU float64
}

// sustainedPhase is one read path under sustained load.
type sustainedPhase struct {
	Name    string
	Path    string
	Leased  bool
	Windows []sustainedWindow
	// UpstreamCalls and MaxUpstreamCalls are for inabit paths only (MaxUpstreamCalls 0 otherwise):
	// calls to the mock during the phase, and the most it may take, one per cache window spanned.
	UpstreamCalls, MaxUpstreamCalls int
	// LeasesListed counts the path's leases by LIST sys/leases/lookup right after the phase; -1
	// when not listed.
	LeasesListed int
	// Drain is how long the path's leases took to be gone after the phase; 0 when not waited for.
	Drain time.Duration
}

// sustainedPair is two read paths measured at once, half the clients each: A the inabit path,
// B its floor.
type sustainedPair struct {
	A, B sustainedPhase
	// LeasesBefore counts both paths' leases right before a leased pair starts; -1 when not
	// counted (lease-free pairs).
	LeasesBefore int
}

type sustainedRun struct {
	Started                time.Time
	Phase, Window          time.Duration
	Clients                int
	LeaseTTL               time.Duration
	AccessTokenTTL, MinTTL time.Duration
	Phases                 []sustainedPhase
	Pairs                  []sustainedPair
	PluginPeak, FloorPeak  int64 // kB (VmHWM) in this run; -1 when unknown
	// ShortPeak and ShortFloorPeak are the peaks (kB) of the short runs' Vault, which includes the
	// 1000-read stampede; -1 when unknown or not run.
	ShortPeak, ShortFloorPeak int64
	LeaseSource               string
}

// pair is the paired run whose inabit path is name, or nil.
func (r *sustainedRun) pair(name string) *sustainedPair {
	for i := range r.Pairs {
		if r.Pairs[i].A.Name == name {
			return &r.Pairs[i]
		}
	}
	return nil
}

func (r *sustainedRun) phase(name string) *sustainedPhase {
	for i := range r.Phases {
		if r.Phases[i].Name == name {
			return &r.Phases[i]
		}
	}
	return nil
}

// windowRatios divides a's req/s by b's, window by window.
func windowRatios(a, b *sustainedPhase) []float64 {
	if a == nil || b == nil {
		return nil
	}
	n := min(len(a.Windows), len(b.Windows))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		ratio := 0.0 // a window where the floor served nothing proves nothing: it fails
		if b.Windows[i].RPS > 0 {
			ratio = a.Windows[i].RPS / b.Windows[i].RPS
		}
		out = append(out, ratio)
	}
	return out
}

// cpuCostRatios estimates, window by window, the pair's ratio as if each path ran alone: the
// floor's CPU seconds per read over the inabit path's. Each plugin process's CPU (its garbage
// collector and the lease revocations Vault sends it included) is charged to its own path; Vault's
// and the bench process's CPU are shared per read, since both paths ask the same of them. Running
// at once shares a plugin's background cost between both paths' throughput; this does not. nil
// when a CPU figure is unknown.
func cpuCostRatios(pr *sustainedPair) []float64 {
	n := min(len(pr.A.Windows), len(pr.B.Windows))
	out := make([]float64, 0, n)
	for i := 0; i < n; i++ {
		a, b := pr.A.Windows[i], pr.B.Windows[i]
		if a.VaultCPU < 0 || a.PluginCPU < 0 || a.FloorCPU < 0 || a.BenchCPU < 0 {
			return nil
		}
		if a.Served == 0 || b.Served == 0 {
			out = append(out, 0)
			continue
		}
		shared := (a.VaultCPU + a.BenchCPU) / float64(a.Served+b.Served)
		costA := shared + a.PluginCPU/float64(a.Served)
		costB := shared + a.FloorCPU/float64(b.Served)
		out = append(out, costB/costA)
	}
	return out
}

// pairErrors is the errors of both paths of a pair.
func pairErrors(pr *sustainedPair) int64 {
	var n int64
	for _, w := range append(append([]sustainedWindow(nil), pr.A.Windows...), pr.B.Windows...) {
		n += w.Errors
	}
	return n
}

// splitAtExpiry separates the windows that end before the first leases can expire from the rest.
func (r *sustainedRun) splitAtExpiry(vals []float64) (before, after []float64) {
	for i, v := range vals {
		if time.Duration(i+1)*r.Window <= r.LeaseTTL {
			before = append(before, v)
		} else {
			after = append(after, v)
		}
	}
	return before, after
}

func rpsOf(p *sustainedPhase) []float64 {
	out := make([]float64, len(p.Windows))
	for i, w := range p.Windows {
		out[i] = w.RPS
	}
	return out
}

func minMax(vals []float64) (float64, float64) {
	if len(vals) == 0 {
		return math.NaN(), math.NaN()
	}
	lo, hi := vals[0], vals[0]
	for _, v := range vals {
		lo, hi = min(lo, v), max(hi, v)
	}
	return lo, hi
}

func medianOf(vals []float64) float64 {
	if len(vals) == 0 {
		return math.NaN()
	}
	cp := append([]float64(nil), vals...)
	sort.Float64s(cp)
	if len(cp)%2 == 0 {
		return (cp[len(cp)/2-1] + cp[len(cp)/2]) / 2
	}
	return cp[len(cp)/2]
}

func verdict(ok bool) string {
	if ok {
		return "**met**"
	}
	return "**not met**"
}

// secs prints a duration as whole seconds, as the tables and the plot count time.
func secs(d time.Duration) string { return fmt.Sprintf("%.0f s", d.Seconds()) }

func mb(kb int64) string {
	if kb < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", float64(kb)/1000)
}

func rangeCell(vals []float64, format string) string {
	if len(vals) == 0 {
		return "–"
	}
	lo, hi := minMax(vals)
	return fmt.Sprintf(format+"–"+format, lo, hi)
}

func leaseCell(n int64) string {
	if n < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%d", n)
}

// sustainedMarkdown is the "Sustained load" section of bench/RESULTS.md.
func sustainedMarkdown(r *sustainedRun, svgName string) string {
	var md strings.Builder
	windowsPerPhase := int(r.Phase / r.Window)
	fmt.Fprintf(&md, "## Sustained load\n\n")
	fmt.Fprintf(&md, "One Vault dev server (in-memory storage), started %s, with every mount tuned to `max-lease-ttl=%s` so that leases expire inside the run. "+
		"Each read path in turn gets %d clients for %s (%.1f lease lifetimes), measured in %s windows: req/s, Vault's RSS (`VmRSS` of the server process) "+
		"and the live lease count (%s). ",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.LeaseTTL, r.Clients, secs(r.Phase), float64(r.Phase)/float64(r.LeaseTTL), secs(r.Window), r.LeaseSource)
	md.WriteString("The lease-free paths run first, so that no expiring lease of another phase disturbs them; then `inabit/token`, whose leases are waited out, then the leased floor, whose leases are waited out too; then the paired runs (below). " +
		"Go does not hand freed heap back to the OS at once, so the leased floor starts on the heap the `inabit/token` phase grew: its RSS is an upper bound. ")
	fmt.Fprintf(&md, "The mock inabit mints %s access tokens and the mount has `access_token_min_ttl` = %s, so the cache is refilled every %s under load. "+
		"The floor plugin answers a constant token (`floor/token` as a lease, `floor/static-token` without one); `KV v2` reads `secret/data/bench`.\n\n",
		secs(r.AccessTokenTTL), secs(r.MinTTL), secs(r.AccessTokenTTL-r.MinTTL))
	fmt.Fprintf(&md, "![req/s, Vault RSS and live leases over time, per read path](%s)\n\n", svgName)
	if len(r.Phases) == 0 {
		md.WriteString("(-pairs-only: no path ran alone; the paired runs are below.)\n\n")
	}

	md.WriteString("| read | lease | req/s before the first expiry | req/s once leases expire | Vault RSS, first → last window (MB) | live leases, last window | leases listed after | errors | upstream calls |\n|---|---|---|---|---|---|---|---|---|\n")
	for i := range r.Phases {
		p := &r.Phases[i]
		before, after := r.splitAtExpiry(rpsOf(p))
		lease := "none"
		if p.Leased {
			lease = secs(r.LeaseTTL)
		}
		var errs int64
		for _, w := range p.Windows {
			errs += w.Errors
		}
		rss, last := "n/a", int64(-1)
		if n := len(p.Windows); n > 0 {
			rss = mb(p.Windows[0].VaultRSS) + " → " + mb(p.Windows[n-1].VaultRSS)
			last = p.Windows[n-1].Leases
		}
		listed := "–"
		if p.LeasesListed >= 0 {
			listed = fmt.Sprintf("%d", p.LeasesListed)
			if p.Drain > 0 {
				listed += fmt.Sprintf(" (gone %s later)", p.Drain.Round(time.Second))
			}
		}
		calls := "–"
		if p.MaxUpstreamCalls > 0 {
			calls = fmt.Sprintf("%d (at most %d)", p.UpstreamCalls, p.MaxUpstreamCalls)
		}
		fmt.Fprintf(&md, "| %s | %s | %s | %s | %s | %s | %s | %d | %s |\n", p.Name, lease, rangeCell(before, "%.0f"), rangeCell(after, "%.0f"), rss, leaseCell(last), listed, errs, calls)
	}

	// Targets.
	md.WriteString("\n### Targets (issue 10), as ratios in this run\n\n| target | measured | |\n|---|---|---|\n")
	static, floorStatic := r.phase(phaseStatic), r.phase(phaseFloorStatic)
	if pr := r.pair(phaseStatic); pr != nil {
		md.WriteString(r.pairTargetRow("`static-token` ≥ 0.9× the lease-free floor, in every window", pr, false))
	}
	if rs := windowRatios(static, floorStatic); len(rs) > 0 {
		lo, _ := minMax(rs)
		fmt.Fprintf(&md, "| the same, taking turns (each path alone, minutes apart: the machine's drift between minutes included) | req/s: lowest window %.3f×, median %.2f× | %s |\n", lo, medianOf(rs), verdict(lo >= 0.9))
	}
	if static != nil && len(static.Windows) > 0 {
		var rss []float64
		leaseLo, leaseHi, leaseKnown := int64(math.MaxInt64), int64(-1), true
		for _, w := range static.Windows {
			if w.VaultRSS >= 0 {
				rss = append(rss, float64(w.VaultRSS))
			}
			if w.Leases < 0 {
				leaseKnown = false
			} else {
				leaseLo, leaseHi = min(leaseLo, w.Leases), max(leaseHi, w.Leases)
			}
		}
		if len(rss) > 0 {
			ref := medianOf(rss)
			lo, hi := minMax(rss)
			dev := max(hi-ref, ref-lo) / ref
			fmt.Fprintf(&md, "| Vault RSS flat (± 10 %%) under `static-token` | %s–%s MB, at most %.1f %% from the median | %s |\n", mb(int64(lo)), mb(int64(hi)), 100*dev, verdict(dev <= 0.10))
		}
		if leaseKnown {
			flat := leaseHi-leaseLo <= max(leaseLo/10, 10)
			fmt.Fprintf(&md, "| lease count flat (± 10 %%) under `static-token` | %d–%d live leases | %s |\n", leaseLo, leaseHi, verdict(flat))
		}
	}
	token, floorLeased := r.phase(phaseToken), r.phase(phaseFloorLeased)
	if pr := r.pair(phaseToken); pr != nil {
		md.WriteString(r.pairTargetRow("`inabit/token` ≥ 0.9× the leased floor, before and after expiry starts", pr, true))
	}
	if rs := windowRatios(token, floorLeased); len(rs) > 0 {
		fmt.Fprintf(&md, "| the same, taking turns (each path alone, minutes apart: the machine's drift and the heap the first leased phase grew included) | req/s: %s | %s |\n",
			r.beforeAfterCell(rs), verdict(r.beforeAfterOK(rs)))
	}
	var callCells []string
	callsOK := true
	counted := append([]sustainedPhase(nil), r.Phases...)
	for _, pr := range r.Pairs {
		a := pr.A
		a.Name += " (paired)"
		counted = append(counted, a)
	}
	for _, p := range counted {
		if p.MaxUpstreamCalls > 0 {
			callCells = append(callCells, fmt.Sprintf("`%s` %d (cache refilled at most %d times)", p.Name, p.UpstreamCalls, p.MaxUpstreamCalls))
			callsOK = callsOK && p.UpstreamCalls <= p.MaxUpstreamCalls
		}
	}
	if len(callCells) > 0 {
		fmt.Fprintf(&md, "| one upstream call per access-token cache window, at %d clients (%d when paired) | %s | %s |\n", r.Clients, r.Clients/2, strings.Join(callCells, "; "), verdict(callsOK))
	}
	if r.PluginPeak >= 0 || r.ShortPeak >= 0 {
		peak := max(r.PluginPeak, r.ShortPeak)
		fmt.Fprintf(&md, "| plugin peak RSS under 40 MB (1 MB = 1000 kB of `/proc`'s `VmHWM`), the highest of both Vaults | %s MB: %s MB after the short runs and the 1000-read stampede, %s MB in the sustained Vault; floor plugin %s and %s MB | %s |\n",
			mb(peak), mb(r.ShortPeak), mb(r.PluginPeak), mb(r.ShortFloorPeak), mb(r.FloorPeak), verdict(r.ShortPeak >= 0 && r.PluginPeak >= 0 && peak < 40_000))
	}

	// Per-window detail.
	type col struct {
		title string
		cell  func(w sustainedWindow) string
	}
	cols := []col{
		{"req/s", func(w sustainedWindow) string { return fmt.Sprintf("%.0f", w.RPS) }},
		{"Vault RSS (MB)", func(w sustainedWindow) string { return mb(w.VaultRSS) }},
		{"live leases", func(w sustainedWindow) string { return leaseCell(w.Leases) }},
	}
	for _, c := range cols {
		if len(r.Phases) == 0 {
			break
		}
		fmt.Fprintf(&md, "\n### %s per %s window\n\n| window ends at |", c.title, secs(r.Window))
		for _, p := range r.Phases {
			fmt.Fprintf(&md, " %s |", p.Name)
		}
		md.WriteString("\n|---|")
		for range r.Phases {
			md.WriteString("---|")
		}
		md.WriteString("\n")
		for i := 0; i < windowsPerPhase; i++ {
			fmt.Fprintf(&md, "| %s |", secs(time.Duration(i+1)*r.Window))
			for _, p := range r.Phases {
				if i < len(p.Windows) {
					fmt.Fprintf(&md, " %s |", c.cell(p.Windows[i]))
				} else {
					md.WriteString(" |")
				}
			}
			md.WriteString("\n")
		}
	}
	md.WriteString("\nThe lease count is Vault-wide, so a phase's first windows may still show the previous phase's last leases.\n")
	md.WriteString(pairsMarkdown(r))
	return md.String()
}

// pairTargetRow judges a pair: in every window (before and after the first expiry, when leased)
// both the req/s ratio and the CPU-per-read estimate must be at least 0.9, with no error. A side
// with no window (a phase shorter than a lease, say) is "not measured", never met.
func (r *sustainedRun) pairTargetRow(target string, pr *sustainedPair, leased bool) string {
	rps, cpu, errs := windowRatios(&pr.A, &pr.B), cpuCostRatios(pr), pairErrors(pr)
	var cells []string
	ok := errs == 0 && len(rps) > 0 && len(cpu) > 0
	for _, m := range []struct {
		name string
		vals []float64
	}{{"req/s", rps}, {"CPU per read", cpu}} {
		if leased {
			cells = append(cells, m.name+": "+r.beforeAfterCell(m.vals))
			ok = ok && r.beforeAfterOK(m.vals)
			continue
		}
		if len(m.vals) == 0 {
			cells = append(cells, m.name+": not measured")
			continue
		}
		lo, _ := minMax(m.vals)
		cells = append(cells, fmt.Sprintf("%s: lowest window %.3f×, median %.2f×", m.name, lo, medianOf(m.vals)))
		ok = ok && lo >= 0.9
	}
	return fmt.Sprintf("| %s: paired (at once, %d clients each) | %s; %d errors | %s |\n", target, r.Clients/2, strings.Join(cells, "; "), errs, verdict(ok))
}

// beforeAfterCell shows the lowest and median ratio before and after the first leases expire.
func (r *sustainedRun) beforeAfterCell(vals []float64) string {
	if len(vals) == 0 {
		return "not measured"
	}
	before, after := r.splitAtExpiry(vals)
	cell := func(v []float64) string {
		if len(v) == 0 {
			return "not measured"
		}
		lo, _ := minMax(v)
		return fmt.Sprintf("lowest %.3f×, median %.2f×", lo, medianOf(v))
	}
	return "before " + cell(before) + ", after " + cell(after)
}

// beforeAfterOK needs windows on both sides of the first expiry, all at least 0.9.
func (r *sustainedRun) beforeAfterOK(vals []float64) bool {
	before, after := r.splitAtExpiry(vals)
	bLo, _ := minMax(before)
	aLo, _ := minMax(after)
	return len(before) > 0 && len(after) > 0 && bLo >= 0.9 && aLo >= 0.9
}

// pairsMarkdown is the per-window table of the paired runs.
func pairsMarkdown(r *sustainedRun) string {
	if len(r.Pairs) == 0 {
		return ""
	}
	var md strings.Builder
	fmt.Fprintf(&md, "\n### Paired runs: each inabit path and its floor at once, %d clients each\n\n", r.Clients/2)
	md.WriteString("Each pair runs alone on the Vault for " + secs(r.Phase) + ". Running at once takes the drift between minutes of a shared machine out of the comparison, " +
		"but it also shares between both paths whatever either plugin costs outside a request (its garbage collector, the lease revocations Vault sends it). " +
		"So every window is judged twice: by req/s, and by CPU seconds per read (`/proc/<pid>/stat`), where each plugin process's CPU is charged to its own path " +
		"and Vault's and the load generator's CPU is shared per read; that ratio, the floor's cost over the inabit path's, is what the pair's req/s ratio would be if each ran alone on a machine it saturated.\n\n| window ends at |")
	for _, pr := range r.Pairs {
		fmt.Fprintf(&md, " %s | %s | req/s ratio | CPU per read ratio | plugin CPU ms per 1000 reads (inabit / floor) |", pr.A.Name, pr.B.Name)
	}
	md.WriteString(" live leases (leased pair) |\n|---|")
	for range r.Pairs {
		md.WriteString("---|---|---|---|---|")
	}
	md.WriteString("---|\n")
	for i := 0; i < int(r.Phase/r.Window); i++ {
		fmt.Fprintf(&md, "| %s |", secs(time.Duration(i+1)*r.Window))
		leases := "–"
		for _, pr := range r.Pairs {
			if i >= len(pr.A.Windows) || i >= len(pr.B.Windows) {
				md.WriteString(" | | | | |")
				continue
			}
			a, b := pr.A.Windows[i], pr.B.Windows[i]
			ratio, cpuRatio, perRead := "–", "–", "–"
			if b.RPS > 0 {
				ratio = fmt.Sprintf("%.3f×", a.RPS/b.RPS)
			}
			if cr := cpuCostRatios(&pr); i < len(cr) {
				cpuRatio = fmt.Sprintf("%.3f×", cr[i])
			}
			if a.Served > 0 && b.Served > 0 && a.PluginCPU >= 0 && a.FloorCPU >= 0 {
				perRead = fmt.Sprintf("%.0f / %.0f", 1e6*a.PluginCPU/float64(a.Served), 1e6*a.FloorCPU/float64(b.Served))
			}
			fmt.Fprintf(&md, " %.0f | %.0f | %s | %s | %s |", a.RPS, b.RPS, ratio, cpuRatio, perRead)
			if pr.A.Leased {
				leases = leaseCell(a.Leases)
			}
		}
		fmt.Fprintf(&md, " %s |\n", leases)
	}
	for _, pr := range r.Pairs {
		fmt.Fprintf(&md, "\n`%s` with `%s`: %d errors", pr.A.Name, pr.B.Name, pairErrors(&pr))
		if pr.LeasesBefore >= 0 && pr.A.Leased {
			fmt.Fprintf(&md, "; leases of both paths right before the pair started: %d", pr.LeasesBefore)
		}
		if pr.A.LeasesListed >= 0 {
			fmt.Fprintf(&md, "; leases listed right after: %d and %d", pr.A.LeasesListed, pr.B.LeasesListed)
		}
		if pr.A.MaxUpstreamCalls > 0 {
			fmt.Fprintf(&md, "; upstream calls %d (at most %d)", pr.A.UpstreamCalls, pr.A.MaxUpstreamCalls)
		}
		md.WriteString(".\n")
	}
	return md.String()
}

func ratioCell(vals []float64, lo float64) string {
	if len(vals) == 0 {
		return "–"
	}
	return fmt.Sprintf("%.3f×", lo)
}

// Plot colours per phase, readable on white and for the common colour-vision deficiencies.
var phaseColour = map[string]string{
	phaseKV:          "#0072b2",
	phaseFloorStatic: "#009e73",
	phaseStatic:      "#56b4e9",
	phaseToken:       "#d55e00",
	phaseFloorLeased: "#e69f00",
}

// sustainedSVG draws req/s, Vault RSS and live leases against time since each phase started, one
// line per read path, in three stacked panels. Hand-written SVG: no plotting dependency.
func sustainedSVG(r *sustainedRun) string {
	const (
		width  = 1040
		left   = 80
		right  = 260 // legend
		top    = 40
		panelH = 200
		gap    = 60
	)
	plotW := float64(width - left - right)
	panels := []struct {
		title string
		value func(w sustainedWindow) float64 // NaN when unknown
	}{
		{"req/s", func(w sustainedWindow) float64 { return w.RPS }},
		{"Vault RSS (MB)", func(w sustainedWindow) float64 {
			if w.VaultRSS < 0 {
				return math.NaN()
			}
			return float64(w.VaultRSS) / 1000
		}},
		{"live leases (thousands)", func(w sustainedWindow) float64 {
			if w.Leases < 0 {
				return math.NaN()
			}
			return float64(w.Leases) / 1000
		}},
	}
	height := top + len(panels)*(panelH+gap) + 10
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&s, `<text x="%d" y="22" font-size="15" font-weight="bold">Sustained load: %d clients, %s per read path, leases capped at %s (%s)</text>`+"\n",
		left, r.Clients, secs(r.Phase), secs(r.LeaseTTL), r.Started.UTC().Format("2006-01-02"))
	maxT := r.Phase.Seconds()
	x := func(t float64) float64 { return left + plotW*t/maxT }
	for pi, panel := range panels {
		y0 := float64(top + pi*(panelH+gap) + 20)
		hi := 0.0
		for _, p := range r.Phases {
			for _, w := range p.Windows {
				if v := panel.value(w); !math.IsNaN(v) {
					hi = max(hi, v)
				}
			}
		}
		hi = niceCeil(hi)
		y := func(v float64) float64 { return y0 + panelH - panelH*v/hi }
		fmt.Fprintf(&s, `<text x="%d" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-8, panel.title)
		// Axes, grid and ticks.
		for i := 0; i <= 4; i++ {
			v := hi * float64(i) / 4
			fmt.Fprintf(&s, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, left+plotW, y(v), y(v))
			fmt.Fprintf(&s, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, tickLabel(v))
		}
		step := 30.0
		for t := 0.0; t <= maxT+0.001; t += step {
			fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/>`+"\n", x(t), x(t), y0+panelH, y0+panelH+4)
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f s</text>`+"\n", x(t), y0+panelH+17, t)
		}
		fmt.Fprintf(&s, `<rect x="%d" y="%.1f" width="%.0f" height="%d" fill="none" stroke="#333"/>`+"\n", left, y0, plotW, panelH)
		if lt := r.LeaseTTL.Seconds(); lt < maxT {
			fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#666" stroke-dasharray="4 4"/>`+"\n", x(lt), x(lt), y0, y0+panelH)
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" fill="#666">first leases expire</text>`+"\n", x(lt)+4, y0-8)
		}
		// One line per phase, a point at the end of each window.
		for _, p := range r.Phases {
			var pts []string
			for _, w := range p.Windows {
				if v := panel.value(w); !math.IsNaN(v) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(min(w.End.Seconds(), maxT)), y(v)))
				}
			}
			if len(pts) == 0 {
				continue
			}
			colour := phaseColour[p.Name]
			if colour == "" {
				colour = "#000"
			}
			fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colour, strings.Join(pts, " "))
			for _, pt := range pts {
				xy := strings.SplitN(pt, ",", 2)
				fmt.Fprintf(&s, `<circle cx="%s" cy="%s" r="2.5" fill="%s"/>`+"\n", xy[0], xy[1], colour)
			}
		}
	}
	// Legend.
	lx := width - right + 20
	for i, p := range r.Phases {
		ly := top + 30 + i*22
		lease := "no lease"
		if p.Leased {
			lease = "lease"
		}
		fmt.Fprintf(&s, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", lx, lx+24, ly, ly, phaseColour[p.Name])
		fmt.Fprintf(&s, `<text x="%d" y="%d">%s (%s)</text>`+"\n", lx+30, ly+4, xmlEscape(p.Name), lease)
	}
	fmt.Fprintf(&s, `<text x="%d" y="%d" fill="#666">time since the phase started</text>`+"\n", left, height-12)
	s.WriteString("</svg>\n")
	return s.String()
}

// niceCeil rounds up to 1, 2 or 5 times a power of ten, so that four grid steps read well.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 4, 5, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func tickLabel(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func xmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}
