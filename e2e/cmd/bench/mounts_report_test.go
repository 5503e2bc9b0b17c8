package main

import (
	"strings"
	"testing"
	"time"

	"github.com/inabit/vault-plugin-secrets-inabit/e2e/internal/mockctl"
)

func TestMountCounts(t *testing.T) {
	got := mountCounts(" 1, 50,200 ,500")
	if len(got) != 4 || got[0] != 1 || got[3] != 500 {
		t.Fatalf("mountCounts = %v", got)
	}
	if got := mountCounts(""); len(got) != 0 {
		t.Fatalf("empty -mounts = %v", got)
	}
}

// bench-mounts replaces its own section and nothing else; a report without one gets it before
// the handler benchmarks.
func TestReplaceMountsSection(t *testing.T) {
	section := mountsBegin + "\n## Many mounts on one Vault\n\nnew\n" + mountsEnd + "\n"
	report := "# Benchmark results\n\n## Sustained load\n\nx\n\n## Handler benchmarks\n\ny\n"
	once := replaceMountsSection(report, section)
	want := "# Benchmark results\n\n## Sustained load\n\nx\n\n" + section + "\n## Handler benchmarks\n\ny\n"
	if once != want {
		t.Fatalf("first insert:\n%s\nwant:\n%s", once, want)
	}
	again := replaceMountsSection(once, strings.Replace(section, "new", "newer", 1))
	if strings.Contains(again, "\nnew\n") || !strings.Contains(again, "\nnewer\n") || strings.Count(again, mountsBegin) != 1 ||
		!strings.HasSuffix(again, "## Handler benchmarks\n\ny\n") || !strings.HasPrefix(again, "# Benchmark results\n\n## Sustained load\n\nx\n\n") {
		t.Fatalf("replace:\n%s", again)
	}
	if got := replaceMountsSection("", section); got != section {
		t.Fatalf("into nothing: %q", got)
	}
	if got := replaceMountsSection("# x", section); got != "# x\n\n"+section {
		t.Fatalf("at the end: %q", got)
	}
}

func TestHerdMinutes(t *testing.T) {
	slot := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	s := slot.Unix()
	hist := mockctl.History{
		Calls: map[mockctl.Op]map[int64]int{
			mockctl.OpRefresh:     {s - 5: 1, s + 10: 5, s + 70: 2, s + 200: 4},
			mockctl.OpAccessToken: {s + 10: 3, s + 71: 2, s + 200: 4},
		},
		Limited:          map[mockctl.Op]map[int64]int{mockctl.OpRefresh: {s + 10: 2}},
		RefreshesApplied: map[int64]int{s - 5: 1, s + 10: 3, s + 70: 2, s + 200: 4},
	}
	per, peakCalls, peakApplied := herdMinutes(hist, slot)
	want := []herdMinute{{-1, 1, 1, 0, 0}, {0, 5, 3, 3, 2}, {1, 2, 2, 2, 0}, {2, 0, 0, 0, 0}, {3, 4, 4, 4, 0}}
	if len(per) != len(want) {
		t.Fatalf("minutes %+v", per)
	}
	for i := range want {
		if per[i] != want[i] {
			t.Fatalf("minute %d: %+v, want %+v", i, per[i], want[i])
		}
	}
	if peakCalls != 8 || peakApplied != 4 {
		t.Fatalf("peaks %d %d", peakCalls, peakApplied)
	}
}

// The report and the plot come out of made-up numbers without a Vault.
func TestMountsReportOnMadeUpNumbers(t *testing.T) {
	r := &mountsRun{Started: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC), Idle: 2 * time.Minute, Clients: 16, Duration: 3 * time.Second, Reps: 1}
	for i, n := range []int{1, 50, 500} {
		kb := int64(30000 + n*40)
		r.Steps = append(r.Steps, mountsStep{N: n, InabitProcs: 1, FloorProcs: 1, InabitRSS: kb, FloorRSS: kb + 1000, VaultRSS: int64(160000 + 400*n),
			VaultRSSAfterInabit: int64(160000 + 200*n), VaultRSSAfterFloor: int64(160000 + 400*n), IdleWindow: 2 * time.Minute,
			InabitCPU: 0.1 * float64(i+1), FloorCPU: 0.05, VaultCPU: 1, InabitEnable: time.Second, InabitConfig: time.Second, FloorEnable: time.Second})
		r.Reads = append(r.Reads, mountsRead{N: n, Inabit: []sample{{rps: 1000}}, Floor: []sample{{rps: 1050}}, PairRatios: []float64{0.9, 1, 1.1}, Loads: []float64{1, 1}})
	}
	r.Herd = &herdResult{Mounts: 500, Schedule: "0 10 * * *", Slot: r.Started, Window: time.Hour, RateLimit: 10,
		Planned: []time.Time{r.Started, r.Started.Add(15 * time.Minute)}, Rotated: 500, PerMinute: []herdMinute{{0, 30, 30, 30, 0}}}
	md := mountsMarkdown(r, "mounts.svg")
	for _, want := range []string{"| 500 | 1 / 1 | 50.0 MB | 51.0 MB | 40 | 40 | 360.0 MB | 200 |", "| 0.95× | 1.00× (0.90–1.10) | 1.00× | 1.00× |", "**500 of 500**", "| 0 | 30 | 30 | 30 | 0 |"} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	svg := mountsSVG(r)
	if !strings.HasPrefix(svg, "<svg") || strings.Count(svg, "<polyline") != 8 || strings.Contains(svg, "NaN") {
		t.Fatalf("svg: %d lines\n%s", strings.Count(svg, "<polyline"), svg)
	}
}
