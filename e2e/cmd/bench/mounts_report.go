package main

// The many-mounts report: the Markdown section and the SVG plot (mount count on the x axis),
// drawn in the style of sustained.svg with its helpers. Standard library only, and no I/O.

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// mountsStep is one mount count of the first pass: both plugins grown to N mounts.
type mountsStep struct {
	N                         int
	InabitProcs, FloorProcs   int           // plugin processes (/proc), -1 when unknown
	InabitEnable, FloorEnable time.Duration // enabling the mounts added in this step
	InabitConfig              time.Duration // writing their config (each verified: one call to the mock)
	// RSS (kB, VmRSS): right after the mounts were added, and at the end of the idle window.
	InabitRSSNow, FloorRSSNow               int64
	VaultRSSAfterInabit, VaultRSSAfterFloor int64
	InabitRSS, FloorRSS, VaultRSS           int64
	InabitHWM, FloorHWM                     int64
	// CPU seconds used in the idle window; -1 when unknown.
	IdleWindow                    time.Duration
	InabitCPU, FloorCPU, VaultCPU float64
	LoadBefore, Load              [3]float64
}

// mountsRead is the read runs over the first N mounts, each read to a random one.
type mountsRead struct {
	N             int
	Inabit, Floor []sample
	// PairRatios: inabit req/s over floor req/s of each run with both at once, half the clients each.
	PairRatios []float64
	PairErrors int
	Loads      []float64 // load average at the end of each run
}

// herdMinute is one minute of the herd at the mock.
type herdMinute struct {
	Minute int // since the slot; -1: before it
	// Refresh calls sent, refreshes applied, access-token calls sent, calls of either refused (429).
	RefreshCalls, RefreshesApplied, AccessCalls, Refused int
}

type herdResult struct {
	Mounts                                                           int
	Schedule                                                         string
	Slot                                                             time.Time
	Window                                                           time.Duration
	RateLimit                                                        int
	WriteTime                                                        time.Duration
	WritesDone, Ended                                                time.Time
	Planned                                                          []time.Time // next_rotation_at of every mount, sorted
	Rotated, Lost, WithError                                         int
	UsersRotatedOnce                                                 int
	Refreshes, RefreshRejected, AccessCalls, AccessRejected, Limited int
	PeakRefreshes, PeakAccess                                        int // in flight at the mock
	PeakCallsPerSecond, PeakRefreshesPerSecond                       int
	PerMinute                                                        []herdMinute
	PluginCPU, VaultCPU                                              float64
	CPUWindow                                                        time.Duration
	LoadStart, Load                                                  [3]float64
}

type mountsRun struct {
	Started           time.Time
	Idle, Duration    time.Duration
	Clients, Reps     int
	PluginEnv         string
	VaultRSSBefore    int64
	Steps             []mountsStep
	Reads             []mountsRead
	ReadUpstreamCalls int
	Herd              *herdResult
}

// perMountKB is (b - a) / (nb - na) in kB per mount, or NaN.
func perMountKB(a, b int64, na, nb int) float64 {
	if a < 0 || b < 0 || nb <= na {
		return math.NaN()
	}
	return float64(b-a) / float64(nb-na)
}

func kbCell(v float64) string {
	if math.IsNaN(v) {
		return "–"
	}
	return fmt.Sprintf("%.0f", v)
}

func durCell(d time.Duration, n int) string {
	if n <= 0 {
		return "–"
	}
	return fmt.Sprintf("%.1f s (%.0f ms each)", d.Seconds(), float64(d.Milliseconds())/float64(n))
}

// cpuPerMinute is CPU seconds over window as milliseconds of CPU per minute.
func cpuPerMinute(cpu float64, window time.Duration) string {
	if cpu < 0 || window <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", cpu*1000/window.Minutes())
}

func loadCell(l [3]float64) string { return fmt.Sprintf("%.2f", l[0]) }

// readRatios are the inabit/floor ratio, the inabit/(inabit at the first count) ratio and the
// floor's own ratio to its first count, of the medians at read row k.
func (r *mountsRun) readRatios(k int) (vsFloor, vsOne, floorVsOne float64) {
	in, fl := median(r.Reads[k].Inabit), median(r.Reads[k].Floor)
	one, floorOne := median(r.Reads[0].Inabit), median(r.Reads[0].Floor)
	return in.rps / max(fl.rps, 1), in.rps / max(one.rps, 1), fl.rps / max(floorOne.rps, 1)
}

// mountsMarkdown is the "Many mounts on one Vault" section of bench/RESULTS.md.
func mountsMarkdown(r *mountsRun, svgName string) string {
	var md strings.Builder
	md.WriteString("## Many mounts on one Vault\n\n")
	counts := make([]string, len(r.Steps))
	for i, s := range r.Steps {
		counts[i] = fmt.Sprint(s.N)
	}
	fmt.Fprintf(&md, "One Vault dev server (in-memory storage), started %s, on which the inabit plugin and the floor plugin are each grown to %s mounts in turn. "+
		"Each inabit mount has its own API user in the mock inabit (its own login token, written to `config` with `verify_connection`, so one call to the mock each); "+
		"the floor plugin's mounts need no config. Vault runs all mounts of a plugin in one process. "+
		"RSS is `VmRSS` from `/proc/<pid>/status`, read at the end of a %s idle window that follows each growth; KB per mount is the growth over the first row's RSS divided by the mounts added. "+
		"Vault's own RSS grows with both plugins' mounts, so its KB per mount divides by both. "+
		"Idle CPU is `utime + stime` from `/proc/<pid>/stat` over the idle window, in which nothing runs but Vault's rollback manager calling each mount's periodic function once a minute. "+
		"The load average (1 min) of this shared 2-core machine is given beside each figure.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), strings.Join(counts, ", "), secs(r.Idle))
	if r.PluginEnv != "" {
		fmt.Fprintf(&md, "The inabit plugin ran with `%s` in its environment.\n\n", r.PluginEnv)
	}
	fmt.Fprintf(&md, "![plugin RSS, Vault RSS, idle CPU and read throughput against the mount count](%s)\n\n", svgName)

	md.WriteString("### Memory and processes\n\n| mounts | plugin processes (inabit / floor) | inabit plugin RSS | floor plugin RSS | inabit KB per mount | floor KB per mount | Vault RSS | Vault KB per mount (both plugins) | load |\n|---|---|---|---|---|---|---|---|---|\n")
	first := r.Steps[0]
	for _, s := range r.Steps {
		fmt.Fprintf(&md, "| %d | %d / %d | %s MB | %s MB | %s | %s | %s MB | %s | %s |\n", s.N, s.InabitProcs, s.FloorProcs,
			mb1(s.InabitRSS), mb1(s.FloorRSS), kbCell(perMountKB(first.InabitRSS, s.InabitRSS, first.N, s.N)), kbCell(perMountKB(first.FloorRSS, s.FloorRSS, first.N, s.N)),
			mb1(s.VaultRSS), kbCell(perMountKB(first.VaultRSS, s.VaultRSS, 2*first.N, 2*s.N)), loadCell(s.Load))
	}
	last := r.Steps[len(r.Steps)-1]
	fmt.Fprintf(&md, "\nPeak RSS (`VmHWM`) at %d mounts: inabit plugin %s MB, floor plugin %s MB. Vault's RSS before any plugin mount: %s MB. "+
		"Vault's growth split by plugin, read right after each plugin's mounts were added: ", last.N, mb1(last.InabitHWM), mb1(last.FloorHWM), mb1(r.VaultRSSBefore))
	var inV, flV int64
	for i, s := range r.Steps {
		if i == 0 {
			continue
		}
		inV += s.VaultRSSAfterInabit - r.Steps[i-1].VaultRSSAfterFloor
		flV += s.VaultRSSAfterFloor - s.VaultRSSAfterInabit
	}
	fmt.Fprintf(&md, "%s KB per inabit mount, %s KB per floor mount (from %d to %d mounts).\n\n",
		kbCell(float64(inV)/float64(max(last.N-first.N, 1))), kbCell(float64(flV)/float64(max(last.N-first.N, 1))), first.N, last.N)

	md.WriteString("### Time to enable and configure\n\nMounts are added one request at a time, as a script would; each row is the mounts added since the row before.\n\n" +
		"| mounts | added | enable inabit mounts | write their config | enable floor mounts |\n|---|---|---|---|---|\n")
	prev := 0
	for _, s := range r.Steps {
		added := s.N - prev
		fmt.Fprintf(&md, "| %d | %d | %s | %s | %s |\n", s.N, added, durCell(s.InabitEnable, added), durCell(s.InabitConfig, added), durCell(s.FloorEnable, added))
		prev = s.N
	}

	md.WriteString("\n### CPU while idle\n\n| mounts | inabit plugin (ms CPU per minute) | floor plugin | Vault (both plugins' mounts) | window | load |\n|---|---|---|---|---|---|\n")
	for _, s := range r.Steps {
		fmt.Fprintf(&md, "| %d | %s | %s | %s | %s | %s |\n", s.N, cpuPerMinute(s.InabitCPU, s.IdleWindow), cpuPerMinute(s.FloorCPU, s.IdleWindow),
			cpuPerMinute(s.VaultCPU, s.IdleWindow), secs(s.IdleWindow), loadCell(s.Load))
	}

	if len(r.Reads) > 0 {
		fmt.Fprintf(&md, "\n### Reads spread over the mounts\n\n%d clients read `static-token` (no lease) of a random one of the first N mounts, inabit and floor taking turns, %d runs of %s each per mount count; "+
			"the median run is shown, its spread is min–max; which plugin goes first alternates from run to run. After each pair of turns both run at once, half the clients each, "+
			"which takes the shared machine's drift between turns out of their ratio (\"at once\": median, min–max). All %d mounts of each plugin stay mounted throughout. "+
			"The mock's access tokens last %s, so each mount's cached token serves the whole stage (%d upstream calls during the reads).\n\n",
			r.Clients, r.Reps, r.Duration, r.Steps[len(r.Steps)-1].N, mountsAccessTTL, r.ReadUpstreamCalls)
		md.WriteString("| mounts read | inabit req/s | spread | floor req/s | spread | inabit / floor | at once | inabit / inabit over 1 mount | floor / floor over 1 mount | p99 inabit / floor | errors | load |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for k, rd := range r.Reads {
			in, fl := median(rd.Inabit), median(rd.Floor)
			ilo, ihi := spread(rd.Inabit)
			flo, fhi := spread(rd.Floor)
			vsFloor, vsOne, floorVsOne := r.readRatios(k)
			errs := rd.PairErrors
			for _, x := range append(append([]sample{}, rd.Inabit...), rd.Floor...) {
				errs += x.errors
			}
			lo, hi := minMax(rd.Loads)
			pair := "–"
			if len(rd.PairRatios) > 0 {
				plo, phi := minMax(rd.PairRatios)
				pair = fmt.Sprintf("%.2f× (%.2f–%.2f)", medianOf(rd.PairRatios), plo, phi)
			}
			fmt.Fprintf(&md, "| %d | %.0f | %.0f–%.0f | %.0f | %.0f–%.0f | %.2f× | %s | %.2f× | %.2f× | %s / %s | %d | %.2f–%.2f |\n",
				rd.N, in.rps, ilo, ihi, fl.rps, flo, fhi, vsFloor, pair, vsOne, floorVsOne, ms(in.p99), ms(fl.p99), errs, lo, hi)
		}
		lowFloor, lowPair, lowOne := math.Inf(1), math.Inf(1), math.Inf(1)
		for k, rd := range r.Reads {
			a, b, _ := r.readRatios(k)
			lowFloor, lowOne = min(lowFloor, a), min(lowOne, b)
			if len(rd.PairRatios) > 0 {
				lowPair = min(lowPair, medianOf(rd.PairRatios))
			}
		}
		fmt.Fprintf(&md, "\nTargets: inabit ≥ 0.9× the floor with the same mounts: lowest median %.2f× taking turns (%s), %.2f× at once (%s); "+
			"≥ 0.9× its own single-mount figure: lowest %.2f× (%s). "+
			"The turns are minutes apart on a shared machine, so the second target carries that drift; the floor's own column shows how much of it is the machine, "+
			"and how much reading a random one of many mounts costs Vault whatever the plugin.\n",
			lowFloor, verdict(lowFloor >= 0.9), lowPair, verdict(lowPair >= 0.9), lowOne, verdict(lowOne >= 0.9))
	}

	if h := r.Herd; h != nil {
		md.WriteString(herdMarkdown(h))
	}
	return md.String()
}

func mb1(kb int64) string {
	if kb < 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", float64(kb)/1000)
}

func herdMarkdown(h *herdResult) string {
	var md strings.Builder
	md.WriteString("\n### Rotation herd\n\n")
	first, last := h.Planned[0], h.Planned[len(h.Planned)-1]
	fmt.Fprintf(&md, "All %d inabit mounts were given `rotation_schedule` = `%s` (one slot, %s UTC) and `rotation_window` = %s, written in %s, %s before the slot. "+
		"The mock answered HTTP 429 with `Retry-After: 1` to any call beyond %d a second (both queries, all users together: one Vault is one client to inabit). "+
		"With %d mounts in its process the plugin puts each rotation off by its own offset within half the window, at most 15 minutes (`next_rotation_at` read back: %s to %s UTC), "+
		"starts them at most two a second across the process (holding them all after any 429 for its Retry-After), and lets at most 4 talk to inabit at once.\n\n",
		h.Mounts, h.Schedule, h.Slot.Format("15:04"), h.Window, h.WriteTime.Round(time.Millisecond), h.Slot.Sub(h.WritesDone).Round(time.Second),
		h.RateLimit, h.Mounts, first.UTC().Format("15:04:05"), last.UTC().Format("15:04:05"))
	fmt.Fprintf(&md, "| | |\n|---|---|\n")
	fmt.Fprintf(&md, "| mounts rotated (last_rotated_at after the slot, no error) | **%d of %d** |\n", h.Rotated, h.Mounts)
	fmt.Fprintf(&md, "| API users whose token was refreshed exactly once and is live at the mock | %d |\n", h.UsersRotatedOnce)
	fmt.Fprintf(&md, "| mounts LOST / with a rotation error | **%d** / %d |\n", h.Lost, h.WithError)
	fmt.Fprintf(&md, "| calls refused by the rate limit (429) | **%d** |\n", h.Limited)
	fmt.Fprintf(&md, "| refresh calls sent (refused ones included) / rejected (dead token) | %d / %d |\n", h.Refreshes, h.RefreshRejected)
	fmt.Fprintf(&md, "| access-token calls (each rotation verifies its new token) / rejected | %d / %d |\n", h.AccessCalls, h.AccessRejected)
	fmt.Fprintf(&md, "| peak refreshes in flight at the mock | **%d** (access-token calls: %d) |\n", h.PeakRefreshes, h.PeakAccess)
	fmt.Fprintf(&md, "| busiest second at the mock | %d calls sent; %d refreshes applied |\n", h.PeakCallsPerSecond, h.PeakRefreshesPerSecond)
	busiest, minutes := 0, 0
	for _, m := range h.PerMinute {
		if m.Minute >= 0 && m.RefreshesApplied > 0 {
			minutes++
		}
		busiest = max(busiest, m.RefreshesApplied)
	}
	fmt.Fprintf(&md, "| refreshes applied per minute: busiest / minutes with any | %d / %d |\n", busiest, minutes)
	fmt.Fprintf(&md, "| CPU from the writes to the end (%s): plugin / Vault | %.1f s / %.1f s |\n", h.CPUWindow.Round(time.Second), h.PluginCPU, h.VaultCPU)
	fmt.Fprintf(&md, "| load average at the start / end | %s / %s |\n", loadCell(h.LoadStart), loadCell(h.Load))
	md.WriteString("\nPer minute after the slot, at the mock:\n\n| minute | refreshes applied | refresh calls sent | access-token calls sent | calls refused (429) |\n|---|---|---|---|---|\n")
	for _, m := range h.PerMinute {
		label := fmt.Sprint(m.Minute)
		if m.Minute < 0 {
			label = "before the slot"
		}
		fmt.Fprintf(&md, "| %s | %d | %d | %d | %d |\n", label, m.RefreshesApplied, m.RefreshCalls, m.AccessCalls, m.Refused)
	}
	return md.String()
}

// plotSeries is one line of a plot panel: points (X[i], Y[i]); NaN values are skipped.
type plotSeries struct {
	Name, Colour string
	X, Y         []float64
}

type plotPanel struct {
	Title  string
	Series []plotSeries
}

// linePlotSVG draws panels stacked, sharing one x axis from 0 to xMax, with a legend per panel:
// sustainedSVG's layout and helpers (niceCeil, tickLabel, xmlEscape) for any x.
func linePlotSVG(title, xLabel string, xMax float64, xTicks []float64, panels []plotPanel) string {
	const (
		width  = 1040
		left   = 80
		right  = 260 // legend
		top    = 40
		panelH = 170
		gap    = 60
	)
	plotW := float64(width - left - right)
	height := top + len(panels)*(panelH+gap) + 10
	var s strings.Builder
	fmt.Fprintf(&s, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&s, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&s, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, xmlEscape(title))
	x := func(v float64) float64 { return left + plotW*v/xMax }
	for pi, panel := range panels {
		y0 := float64(top + pi*(panelH+gap) + 20)
		hi := 0.0
		for _, sr := range panel.Series {
			for _, v := range sr.Y {
				if !math.IsNaN(v) {
					hi = max(hi, v)
				}
			}
		}
		hi = niceCeil(hi)
		y := func(v float64) float64 { return y0 + panelH - panelH*v/hi }
		fmt.Fprintf(&s, `<text x="%d" y="%.0f" font-weight="bold">%s</text>`+"\n", left, y0-8, xmlEscape(panel.Title))
		for i := 0; i <= 4; i++ {
			v := hi * float64(i) / 4
			fmt.Fprintf(&s, `<line x1="%d" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", left, left+plotW, y(v), y(v))
			fmt.Fprintf(&s, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(v)+4, tickLabel(v))
		}
		for _, t := range xTicks {
			fmt.Fprintf(&s, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#999"/>`+"\n", x(t), x(t), y0+panelH, y0+panelH+4)
			fmt.Fprintf(&s, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x(t), y0+panelH+17, tickLabel(t))
		}
		fmt.Fprintf(&s, `<rect x="%d" y="%.1f" width="%.0f" height="%d" fill="none" stroke="#333"/>`+"\n", left, y0, plotW, panelH)
		for si, sr := range panel.Series {
			var pts []string
			for i := range sr.X {
				if i < len(sr.Y) && !math.IsNaN(sr.Y[i]) {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(sr.X[i]), y(sr.Y[i])))
				}
			}
			if len(pts) > 0 {
				fmt.Fprintf(&s, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", sr.Colour, strings.Join(pts, " "))
				for _, pt := range pts {
					xy := strings.SplitN(pt, ",", 2)
					fmt.Fprintf(&s, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], sr.Colour)
				}
			}
			lx, ly := width-right+20, int(y0)+14+si*22
			fmt.Fprintf(&s, `<line x1="%d" x2="%d" y1="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", lx, lx+24, ly, ly, sr.Colour)
			fmt.Fprintf(&s, `<text x="%d" y="%d">%s</text>`+"\n", lx+30, ly+4, xmlEscape(sr.Name))
		}
	}
	fmt.Fprintf(&s, `<text x="%d" y="%d" fill="#666">%s</text>`+"\n", left, height-12, xmlEscape(xLabel))
	s.WriteString("</svg>\n")
	return s.String()
}

// mountsSVG plots the first pass and the reads against the mount count.
func mountsSVG(r *mountsRun) string {
	var xs []float64
	xMax := 0.0
	for _, s := range r.Steps {
		xs = append(xs, float64(s.N))
		xMax = max(xMax, float64(s.N))
	}
	col := func(f func(s mountsStep) float64) []float64 {
		out := make([]float64, len(r.Steps))
		for i, s := range r.Steps {
			out[i] = f(s)
		}
		return out
	}
	mbOf := func(kb int64) float64 {
		if kb < 0 {
			return math.NaN()
		}
		return float64(kb) / 1000
	}
	perMin := func(cpu float64, w time.Duration) float64 {
		if cpu < 0 || w <= 0 {
			return math.NaN()
		}
		return cpu * 1000 / w.Minutes()
	}
	const inabitColour, floorColour, vaultColour = "#d55e00", "#e69f00", "#0072b2"
	panels := []plotPanel{
		{"plugin process RSS (MB)", []plotSeries{
			{"inabit plugin", inabitColour, xs, col(func(s mountsStep) float64 { return mbOf(s.InabitRSS) })},
			{"floor plugin", floorColour, xs, col(func(s mountsStep) float64 { return mbOf(s.FloorRSS) })},
		}},
		{"Vault RSS (MB), both plugins' mounts", []plotSeries{
			{"Vault", vaultColour, xs, col(func(s mountsStep) float64 { return mbOf(s.VaultRSS) })},
		}},
		{"CPU while idle (ms per minute)", []plotSeries{
			{"inabit plugin", inabitColour, xs, col(func(s mountsStep) float64 { return perMin(s.InabitCPU, s.IdleWindow) })},
			{"floor plugin", floorColour, xs, col(func(s mountsStep) float64 { return perMin(s.FloorCPU, s.IdleWindow) })},
			{"Vault", vaultColour, xs, col(func(s mountsStep) float64 { return perMin(s.VaultCPU, s.IdleWindow) })},
		}},
	}
	if len(r.Reads) > 0 {
		var rx, in, fl []float64
		for _, rd := range r.Reads {
			rx = append(rx, float64(rd.N))
			in = append(in, median(rd.Inabit).rps)
			fl = append(fl, median(rd.Floor).rps)
		}
		panels = append(panels, plotPanel{fmt.Sprintf("reads to a random mount (req/s, %d clients, median)", r.Clients), []plotSeries{
			{"inabit/static-token", inabitColour, rx, in},
			{"floor/static-token", floorColour, rx, fl},
		}})
	}
	title := fmt.Sprintf("Many mounts on one Vault: one plugin process each (%s)", r.Started.UTC().Format("2006-01-02"))
	return linePlotSVG(title, "mounts of each plugin", xMax, xs, panels)
}
