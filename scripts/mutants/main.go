// Command mutants judges the unit tests by the mutations they kill. Two modes:
//
//	go run ./scripts/mutants curated [flags]   the hand-written protocol mutations in
//	                                           scripts/mutants/mutations.txt, each run against
//	                                           the unit suite through `go test -overlay`
//	go run ./scripts/mutants gremlins [flags]  github.com/go-gremlins/gremlins on chosen packages,
//	                                           survivors less scripts/mutants/equivalent.txt
//
// Both write their section of testdata/mutants.md and leave the other section as it was. Nothing
// in the work tree is modified: mutants live in a temporary directory and reach the compiler
// through an overlay file. Run it from the module root (make mutants does). See README.md here.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

func main() {
	args := os.Args[1:]
	mode := "curated"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "curated":
		err = runCurated(args)
	case "gremlins":
		err = runGremlins(args)
	default:
		err = fmt.Errorf("unknown mode %q: want curated or gremlins", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mutants:", err)
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(int(ee))
		}
		os.Exit(1)
	}
}

// exitError ends the program with that status after the report is written.
type exitError int

func (e exitError) Error() string { return "exit status " + strconv.Itoa(int(e)) }

// ---------------------------------------------------------------------------------------------
// The mutation list.

// Mutation is one entry of mutations.txt.
type Mutation struct {
	Name string
	Desc string
	Line int // where its header is in the list, for messages
	// Hunks are applied in order; each names its file.
	Hunks []Hunk
}

// Hunk replaces the one occurrence of Old in File by New.
type Hunk struct {
	File string
	Old  []string // lines, leading indentation stripped
	New  []string
}

var nameRE = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// ParseList reads the mutation list format (README.md describes it).
func ParseList(text string) ([]Mutation, error) {
	var (
		muts []Mutation
		cur  *Mutation
		file string
		hunk *Hunk
		// state within a hunk: 0 none, '-' reading Old, '+' reading New
		state byte
	)
	seen := map[string]int{}
	closeHunk := func() {
		if hunk != nil {
			cur.Hunks = append(cur.Hunks, *hunk)
			hunk = nil
		}
		state = 0
	}
	finish := func() error {
		if cur == nil {
			return nil
		}
		closeHunk()
		if len(cur.Hunks) == 0 {
			return fmt.Errorf("line %d: mutation %s has no '-' lines", cur.Line, cur.Name)
		}
		muts = append(muts, *cur)
		cur = nil
		return nil
	}
	for i, raw := range strings.Split(text, "\n") {
		ln := i + 1
		line := strings.TrimRight(raw, " \t\r")
		switch {
		case strings.HasPrefix(line, "## "):
			if err := finish(); err != nil {
				return nil, err
			}
			name, desc, ok := strings.Cut(strings.TrimPrefix(line, "## "), ":")
			name, desc = strings.TrimSpace(name), strings.TrimSpace(desc)
			if !ok || desc == "" {
				return nil, fmt.Errorf("line %d: want '## kebab-name: what protocol guarantee it breaks'", ln)
			}
			if !nameRE.MatchString(name) {
				return nil, fmt.Errorf("line %d: mutation name %q is not kebab-case", ln, name)
			}
			if prev, dup := seen[name]; dup {
				return nil, fmt.Errorf("line %d: mutation %s already defined on line %d", ln, name, prev)
			}
			seen[name] = ln
			cur = &Mutation{Name: name, Desc: desc, Line: ln}
			file = ""
		case cur == nil:
			if line != "" && !strings.HasPrefix(line, "#") {
				return nil, fmt.Errorf("line %d: text outside a mutation (start one with '## name: description')", ln)
			}
		case strings.HasPrefix(line, "file:"):
			closeHunk()
			file = strings.TrimSpace(strings.TrimPrefix(line, "file:"))
			if file == "" || filepath.IsAbs(file) || strings.Contains(file, "..") {
				return nil, fmt.Errorf("line %d: mutation %s: want 'file: path/relative/to/module/root.go'", ln, cur.Name)
			}
		case line == "-" || strings.HasPrefix(line, "- "):
			if file == "" {
				return nil, fmt.Errorf("line %d: mutation %s: '-' line before any 'file:' line", ln, cur.Name)
			}
			if state == '+' {
				closeHunk() // a new hunk in the same file
			}
			if hunk == nil {
				hunk = &Hunk{File: file}
			}
			state = '-'
			hunk.Old = append(hunk.Old, strings.TrimLeft(strings.TrimPrefix(line, "-"), " \t"))
		case line == "+" || strings.HasPrefix(line, "+ "):
			if state == 0 {
				return nil, fmt.Errorf("line %d: mutation %s: '+' line without the '-' lines it replaces", ln, cur.Name)
			}
			state = '+'
			hunk.New = append(hunk.New, strings.TrimLeft(strings.TrimPrefix(line, "+"), " \t"))
		case line == "":
			closeHunk()
		case strings.HasPrefix(line, "#"):
			// a comment inside a mutation
		default:
			return nil, fmt.Errorf("line %d: mutation %s: unexpected line %q (want 'file:', '- ', '+ ' or a blank line)", ln, cur.Name, line)
		}
	}
	if err := finish(); err != nil {
		return nil, err
	}
	return muts, nil
}

// find returns where the snippet occurs in src: leading indentation is insignificant on every
// snippet line (the first may start mid-line), everything else must match exactly.
func (h Hunk) find(src string) [][]int {
	parts := make([]string, len(h.Old))
	for i, l := range h.Old {
		parts[i] = regexp.QuoteMeta(l)
	}
	re := regexp.MustCompile(strings.Join(parts, `\n[ \t]*`))
	return re.FindAllStringIndex(src, -1)
}

// Apply returns the mutated contents of every file the mutation touches, keyed by path relative
// to root. It fails, naming the mutation, unless each snippet occurs exactly once.
func (m Mutation) Apply(root string) (map[string]string, error) {
	out := map[string]string{}
	for i, h := range m.Hunks {
		src, ok := out[h.File]
		if !ok {
			b, err := os.ReadFile(filepath.Join(root, h.File))
			if err != nil {
				return nil, fmt.Errorf("mutation %s: %v", m.Name, err)
			}
			src = string(b)
		}
		locs := h.find(src)
		if len(locs) != 1 {
			return nil, fmt.Errorf("mutation %s (list line %d): snippet %d (%q…) occurs %d times in %s, want exactly once: update the list to the code",
				m.Name, m.Line, i+1, h.Old[0], len(locs), h.File)
		}
		mutated := src[:locs[0][0]] + strings.Join(h.New, "\n") + src[locs[0][1]:]
		if mutated == src {
			return nil, fmt.Errorf("mutation %s: snippet %d changes nothing", m.Name, i+1)
		}
		out[h.File] = mutated
	}
	return out, nil
}

// Files lists the files a mutation touches, in order.
func (m Mutation) Files() []string {
	var fs []string
	for _, h := range m.Hunks {
		if len(fs) == 0 || fs[len(fs)-1] != h.File {
			fs = append(fs, h.File)
		}
	}
	return fs
}

// ---------------------------------------------------------------------------------------------
// Curated mode.

// Outcome of one mutant.
const (
	Killed     = "killed"
	Survived   = "survived"
	BuildError = "build-error"
	Timeout    = "timeout"
)

type result struct {
	m       Mutation
	outcome string
	killer  string // first failing test, or what failed
	secs    float64
	detail  string // head of the output for build errors
}

func splitList(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' })
}

func runCurated(args []string) error {
	fs := flag.NewFlagSet("curated", flag.ExitOnError)
	list := fs.String("list", "scripts/mutants/mutations.txt", "mutation list")
	pkgs := fs.String("pkgs", ". ./internal/...", "packages to test, space- or comma-separated")
	run := fs.String("run", "", "go test -run pattern (to try the tool quickly; the recorded table should use the whole suite)")
	timeout := fs.Duration("timeout", 10*time.Minute, "go test -timeout for each run; a mutant that hits it is killed but flagged")
	only := fs.String("only", "", "comma-separated mutation names to run (default all)")
	parallel := fs.Int("parallel", 1, "mutants tested at once")
	out := fs.String("out", "testdata/mutants.md", "Markdown report to update (its curated section)")
	allowSurvivors := fs.Bool("allow-survivors", false, "exit 0 even if a mutation survived or failed to build")
	skipBaseline := fs.Bool("skip-baseline", false, "do not run the unmutated suite first")
	check := fs.Bool("check", false, "only check that every mutation applies (each snippet exactly once); run nothing")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./scripts/mutants curated [flags]")
		fs.PrintDefaults()
	}
	_ = fs.Parse(args)
	if fs.NArg() != 0 {
		fs.Usage()
		return exitError(2)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	text, err := os.ReadFile(rootPath(root, *list))
	if err != nil {
		return err
	}
	muts, err := ParseList(string(text))
	if err != nil {
		return fmt.Errorf("%s: %w", *list, err)
	}
	if *only != "" {
		want := map[string]bool{}
		for _, n := range splitList(*only) {
			want[n] = true
		}
		var sel []Mutation
		for _, m := range muts {
			if want[m.Name] {
				sel = append(sel, m)
				delete(want, m.Name)
			}
		}
		if len(want) > 0 {
			var missing []string
			for n := range want {
				missing = append(missing, n)
			}
			sort.Strings(missing)
			return fmt.Errorf("-only names no such mutation: %s", strings.Join(missing, ", "))
		}
		muts = sel
	}
	// Every mutation must apply before anything runs: a stale list is a hard error.
	mutated := make([]map[string]string, len(muts))
	var errs []string
	for i, m := range muts {
		if mutated[i], err = m.Apply(root); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "\n"))
	}
	if *check {
		fmt.Printf("%d mutations, each snippet found exactly once\n", len(muts))
		return nil
	}

	tmp, err := os.MkdirTemp("", "mutants-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	testArgs := []string{"test", "-count=1", "-failfast", "-timeout", timeout.String()}
	if *run != "" {
		testArgs = append(testArgs, "-run", *run)
	}
	pkgList := splitList(*pkgs)
	goTest := func(overlay string) (string, error, time.Duration) {
		a := append([]string{}, testArgs...)
		if overlay != "" {
			a = append(a, "-overlay="+overlay)
		}
		a = append(a, pkgList...)
		start := time.Now()
		// The test binary's own -timeout panics first; this only catches a stuck build or vet.
		outp, err := runCmd(root, *timeout+5*time.Minute, "go", a...)
		return outp, err, time.Since(start)
	}
	cmdLine := strings.TrimSpace("go run ./scripts/mutants curated " + shellJoin(args))
	shown := "go " + strings.Join(testArgs, " ") + " -overlay=<mutant.json> " + strings.Join(pkgList, " ")

	var baseSecs float64
	if !*skipBaseline {
		fmt.Printf("baseline: go %s %s\n", strings.Join(testArgs, " "), strings.Join(pkgList, " "))
		outp, err, took := goTest("")
		baseSecs = took.Seconds()
		if err != nil {
			fmt.Fprintln(os.Stderr, tail(outp, 40))
			return fmt.Errorf("the unmutated suite is not green (%v): fix it before judging it by mutants", err)
		}
		fmt.Printf("baseline green in %.0f s\n", baseSecs)
	}

	results := make([]result, len(muts))
	for i, m := range muts {
		results[i].m = m
	}
	var printMu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for w := 0; w < max(*parallel, 1); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := testMutant(root, tmp, i, muts[i], mutated[i], goTest)
				printMu.Lock()
				results[i] = r
				// The report is rewritten after every mutant, so a long run that is stopped
				// still leaves what it found.
				partial := curatedMarkdown(root, results, "partial: "+tallyResults(results), cmdLine, shown, baseSecs)
				if err := writeSection(rootPath(root, *out), "curated", partial); err != nil {
					fmt.Fprintln(os.Stderr, "mutants:", err)
				}
				fmt.Printf("[%d/%d] %-34s %-11s %6.0f s  %s\n", i+1, len(muts), r.m.Name, r.outcome, r.secs, r.killer)
				if r.outcome == BuildError {
					fmt.Println(indent(r.detail))
				}
				printMu.Unlock()
			}
		}()
	}
	for i := range muts {
		work <- i
	}
	close(work)
	wg.Wait()

	counts := countOutcomes(results)
	summary := tallyResults(results)
	fmt.Println(summary)

	section := curatedMarkdown(root, results, summary, cmdLine, shown, baseSecs)
	if err := writeSection(rootPath(root, *out), "curated", section); err != nil {
		return err
	}
	fmt.Println("wrote", *out)
	if (counts[Survived] > 0 || counts[BuildError] > 0) && !*allowSurvivors {
		return fmt.Errorf("%d mutations survived and %d did not build (-allow-survivors to accept)", counts[Survived], counts[BuildError])
	}
	return nil
}

func countOutcomes(rs []result) map[string]int {
	counts := map[string]int{}
	for _, r := range rs {
		counts[r.outcome]++
	}
	return counts
}

// tallyResults is the summary line: N killed of M.
func tallyResults(rs []result) string {
	c := countOutcomes(rs)
	s := fmt.Sprintf("%d killed of %d (%d survived, %d build errors, %d timeouts counted as killed)",
		c[Killed]+c[Timeout], len(rs)-c[""], c[Survived], c[BuildError], c[Timeout])
	if c[""] > 0 {
		s += fmt.Sprintf("; %d not run yet", c[""])
	}
	return s
}

func testMutant(root, tmp string, i int, m Mutation, files map[string]string,
	goTest func(string) (string, error, time.Duration)) result {
	r := result{m: m}
	dir := filepath.Join(tmp, fmt.Sprintf("%02d-%s", i, m.Name))
	replace := map[string]string{}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		r.outcome, r.detail = BuildError, err.Error()
		return r
	}
	for rel, content := range files {
		p := filepath.Join(dir, strings.ReplaceAll(filepath.ToSlash(rel), "/", "__"))
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			r.outcome, r.detail = BuildError, err.Error()
			return r
		}
		replace[filepath.Join(root, rel)] = p
	}
	overlay := filepath.Join(dir, "overlay.json")
	b, _ := json.Marshal(map[string]any{"Replace": replace})
	if err := os.WriteFile(overlay, b, 0o644); err != nil {
		r.outcome, r.detail = BuildError, err.Error()
		return r
	}
	outp, err, took := goTest(overlay)
	r.secs = took.Seconds()
	r.outcome, r.killer, r.detail = classify(outp, err)
	return r
}

var (
	failRE    = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)
	timeoutRE = regexp.MustCompile(`(?m)^panic: test timed out after`)
	runningRE = regexp.MustCompile(`(?m)^running tests:\n\t(\S+)`)
	pkgFailRE = regexp.MustCompile(`(?m)^FAIL\t(\S+)`)
	buildRE   = regexp.MustCompile(`\[(build|setup) failed\]`)
)

// classify reads go test's output: which outcome, and which test killed the mutant.
func classify(out string, err error) (outcome, killer, detail string) {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return Survived, "", ""
	case errors.Is(err, context.DeadlineExceeded):
		return Timeout, "go test did not finish", ""
	case !errors.As(err, &ee):
		return BuildError, "", err.Error()
	case buildRE.MatchString(out):
		return BuildError, "", head(out, 15)
	case timeoutRE.MatchString(out):
		k := "timed out"
		if m := runningRE.FindStringSubmatch(out); m != nil {
			k = m[1] + " (timed out)"
		}
		return Timeout, k, ""
	}
	if m := failRE.FindStringSubmatch(out); m != nil {
		return Killed, m[1], ""
	}
	if strings.Contains(out, "\npanic: ") || strings.HasPrefix(out, "panic: ") {
		k := "panic"
		if m := pkgFailRE.FindStringSubmatch(out); m != nil {
			k = "panic in " + m[1]
		}
		return Killed, k, ""
	}
	if m := pkgFailRE.FindStringSubmatch(out); m != nil {
		return Killed, "package " + m[1] + " failed", ""
	}
	return BuildError, "", head(out, 15)
}

func curatedMarkdown(root string, rs []result, summary, cmd, shown string, baseSecs float64) string {
	var b strings.Builder
	b.WriteString("## Curated protocol mutations\n\n")
	fmt.Fprintf(&b, "Mutations from `scripts/mutants/mutations.txt`, each run on %s.\n\n", commitNote(root))
	fmt.Fprintf(&b, "Command: `%s`  \nEach mutant: `%s`", strings.TrimSpace(cmd), shown)
	if baseSecs > 0 {
		fmt.Fprintf(&b, "  \nUnmutated suite: green in %.0f s", baseSecs)
	}
	fmt.Fprintf(&b, "\n\n**%s**\n\n", summary)
	b.WriteString("| Mutation | Breaks | File | Outcome | Killed by | Seconds |\n")
	b.WriteString("|---|---|---|---|---|---:|\n")
	for _, r := range rs {
		outcome := r.outcome
		switch outcome {
		case "":
			outcome = "not run yet"
		case Survived:
			outcome = "**SURVIVED**"
		case BuildError:
			outcome = "**BUILD ERROR** (list defect)"
		case Timeout:
			outcome = "killed (timeout)"
		}
		killer := r.killer
		if killer != "" {
			killer = "`" + killer + "`"
		}
		secs := fmt.Sprintf("%.0f", r.secs)
		if r.outcome == "" {
			secs = ""
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s | %s |\n", r.m.Name, mdCell(r.m.Desc),
			strings.Join(r.m.Files(), ", "), outcome, mdCell(killer), secs)
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// Gremlins mode.

const gremlinsModule = "github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0"

// gremlinsReport is the part of gremlins' -o JSON report this tool reads.
type gremlinsReport struct {
	Files             []gremlinsFile `json:"files"`
	TestEfficacy      float64        `json:"test_efficacy"`
	MutationsCoverage float64        `json:"mutations_coverage"`
	ElapsedTime       float64        `json:"elapsed_time"`
}

type gremlinsFile struct {
	FileName  string             `json:"file_name"`
	Mutations []gremlinsMutation `json:"mutations"`
}

type gremlinsMutation struct {
	Line   int    `json:"line"`
	Column int    `json:"column"`
	Type   string `json:"type"`
	Status string `json:"status"`
}

type survivor struct {
	File, Mutator, Status string
	Line, Col             int
	Equivalent            string // the reason from equivalent.txt, if listed
}

type pkgResult struct {
	Pkg                                   string
	Skipped                               string
	Killed, Lived, Equiv, NotCovered      int
	TimedOut, NotViable                   int
	Efficacy, EfficacyEquiv, MutatorCover float64
	Survivors                             []survivor
	Secs                                  float64
	Err                                   string
}

// equivalents maps "file:line:MUTATOR" to the reason given.
func readEquivalents(path string) (map[string]string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	eq := map[string]string{}
	for i, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, reason, _ := strings.Cut(line, " ")
		reason = strings.TrimSpace(reason)
		parts := strings.Split(key, ":")
		if len(parts) != 3 || reason == "" {
			return nil, fmt.Errorf("%s:%d: want 'file.go:line:MUTATOR  why it cannot be killed'", path, i+1)
		}
		if _, err := strconv.Atoi(parts[1]); err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a line number", path, i+1, parts[1])
		}
		eq[filepath.ToSlash(filepath.Clean(parts[0]))+":"+parts[1]+":"+strings.ToUpper(parts[2])] = reason
	}
	return eq, nil
}

func runGremlins(args []string) error {
	fs := flag.NewFlagSet("gremlins", flag.ExitOnError)
	pkgs := fs.String("pkgs", "./internal/rotation ./internal/inabitapi", "package directories, space- or comma-separated; missing ones are skipped")
	equiv := fs.String("equivalents", "scripts/mutants/equivalent.txt", "survivors marked equivalent (file:line:MUTATOR  reason)")
	minEff := fs.Float64("min-efficacy", 95, "fail when a package's efficacy, after equivalents, is below this percentage")
	out := fs.String("out", "testdata/mutants.md", "Markdown report to update (its gremlins section)")
	workers := fs.Int("workers", 1, "gremlins --workers")
	coef := fs.Int("timeout-coefficient", 0, "gremlins --timeout-coefficient (0: its default)")
	gremlins := fs.String("gremlins", "go run "+gremlinsModule, "command that runs gremlins")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: go run ./scripts/mutants gremlins [flags]")
		fs.PrintDefaults()
	}
	_ = fs.Parse(args)
	if fs.NArg() != 0 {
		fs.Usage()
		return exitError(2)
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	eq, err := readEquivalents(rootPath(root, *equiv))
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mutants-gremlins-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	used := map[string]bool{}
	var results []pkgResult
	failed := false
	for i, pkg := range splitList(*pkgs) {
		pr := pkgResult{Pkg: pkg}
		if st, err := os.Stat(filepath.Join(root, pkg)); err != nil || !st.IsDir() {
			pr.Skipped = "directory does not exist"
			fmt.Printf("gremlins: skipping %s: the directory does not exist\n", pkg)
			results = append(results, pr)
			continue
		}
		report := filepath.Join(tmp, fmt.Sprintf("report-%d.json", i))
		cmdArgs := append(strings.Fields(*gremlins), "unleash", "--workers", strconv.Itoa(*workers), "--output", report)
		if *coef > 0 {
			cmdArgs = append(cmdArgs, "--timeout-coefficient", strconv.Itoa(*coef))
		}
		cmdArgs = append(cmdArgs, pkg)
		fmt.Printf("gremlins: %s\n", strings.Join(cmdArgs, " "))
		start := time.Now()
		// gremlins times each mutant's tests from its coverage run; a cached `go test` result makes
		// that near zero and nearly every mutant a TIMED OUT. -count=1 in GOFLAGS reaches the go
		// test commands gremlins runs (go commands ignore GOFLAGS entries that are not theirs).
		goflags := strings.TrimSpace(os.Getenv("GOFLAGS") + " -count=1")
		outp, runErr := run(root, 3*time.Hour, os.Stdout, []string{"GOFLAGS=" + goflags}, cmdArgs[0], cmdArgs[1:]...)
		pr.Secs = time.Since(start).Seconds()
		raw, readErr := os.ReadFile(report)
		if runErr != nil || readErr != nil {
			pr.Err = fmt.Sprintf("gremlins failed (%v): %s", errors.Join(runErr, readErr), tail(outp, 5))
			fmt.Println(pr.Err)
			failed = true
			results = append(results, pr)
			continue
		}
		var rep gremlinsReport
		if err := json.Unmarshal(raw, &rep); err != nil {
			return fmt.Errorf("reading gremlins' report for %s: %v", pkg, err)
		}
		tally(&pr, rep, pkg, eq, used)
		fmt.Printf("gremlins: %s: efficacy %.2f%% (%.2f%% after %d equivalents), mutator coverage %.2f%%, %d killed, %d lived, %d not covered\n",
			pkg, pr.Efficacy, pr.EfficacyEquiv, pr.Equiv, pr.MutatorCover, pr.Killed, pr.Lived, pr.NotCovered)
		if pr.EfficacyEquiv < *minEff {
			fmt.Printf("gremlins: %s is below -min-efficacy %.0f%%\n", pkg, *minEff)
			failed = true
		}
		results = append(results, pr)
	}
	var stale []string
	for k := range eq {
		if !used[k] {
			stale = append(stale, k)
		}
	}
	sort.Strings(stale)
	for _, k := range stale {
		fmt.Printf("gremlins: %s lists %s, which no tested package reports as a survivor (stale line number?)\n", *equiv, k)
	}
	section := gremlinsMarkdown(root, results, stale, *minEff, *equiv, "go run ./scripts/mutants gremlins "+shellJoin(args), *gremlins)
	if err := writeSection(rootPath(root, *out), "gremlins", section); err != nil {
		return err
	}
	fmt.Println("wrote", *out)
	if failed {
		return errors.New("gremlins: a package is below -min-efficacy or gremlins failed")
	}
	return nil
}

// tally counts a package's mutants with gremlins' own formulas, so the figures match what it
// prints: efficacy is killed / (killed + lived) and mutator coverage (killed + lived) / (killed +
// lived + not covered). Timed-out mutants are in neither: a timeout that is only a slow machine
// must not pass for a kill (a hang is shown in its own column).
func tally(pr *pkgResult, rep gremlinsReport, pkg string, eq map[string]string, used map[string]bool) {
	for _, f := range rep.Files {
		// gremlins names files relative to the package directory; report them from the module root.
		file := filepath.ToSlash(filepath.Join(pkg, f.FileName))
		for _, m := range f.Mutations {
			switch m.Status {
			case "KILLED":
				pr.Killed++
			case "TIMED OUT":
				pr.TimedOut++
			case "NOT VIABLE":
				pr.NotViable++
			case "NOT COVERED", "LIVED":
				s := survivor{File: file, Line: m.Line, Col: m.Column, Mutator: m.Type, Status: m.Status}
				if m.Status == "NOT COVERED" {
					pr.NotCovered++
				} else {
					pr.Lived++
					s.Equivalent = lookupEquiv(eq, used, file, m.Line, m.Type)
					if s.Equivalent != "" {
						pr.Equiv++
					}
				}
				pr.Survivors = append(pr.Survivors, s)
			}
		}
	}
	sort.Slice(pr.Survivors, func(i, j int) bool {
		a, b := pr.Survivors[i], pr.Survivors[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
	killed := pr.Killed
	pr.Efficacy = pct(killed, killed+pr.Lived)
	pr.EfficacyEquiv = pct(killed, killed+pr.Lived-pr.Equiv)
	pr.MutatorCover = pct(killed+pr.Lived, killed+pr.Lived+pr.NotCovered)
}

// lookupEquiv finds a survivor in equivalent.txt (file relative to the module root).
func lookupEquiv(eq map[string]string, used map[string]bool, file string, line int, mutator string) string {
	k := file + ":" + strconv.Itoa(line) + ":" + strings.ToUpper(mutator)
	if r, ok := eq[k]; ok {
		used[k] = true
		return r
	}
	return ""
}

func pct(a, b int) float64 {
	if b == 0 {
		return 100
	}
	return 100 * float64(a) / float64(b)
}

func gremlinsMarkdown(root string, rs []pkgResult, stale []string, minEff float64, equiv, cmd, gremlins string) string {
	var b strings.Builder
	b.WriteString("## gremlins\n\n")
	fmt.Fprintf(&b, "`%s unleash` per package, on %s. Efficacy is killed / (killed + lived), as gremlins computes it (timed-out mutants are in neither); "+
		"\"after equivalents\" leaves out the survivors listed in `%s`. Threshold: %.0f%% after equivalents.\n\n",
		gremlins, commitNote(root), equiv, minEff)
	fmt.Fprintf(&b, "Command: `%s`\n\n", strings.TrimSpace(cmd))
	b.WriteString("| Package | Killed | Lived | Equivalent | Not covered | Timed out | Not viable | Efficacy | After equivalents | Mutator coverage | Seconds |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		switch {
		case r.Skipped != "":
			fmt.Fprintf(&b, "| `%s` | skipped: %s | | | | | | | | | |\n", r.Pkg, r.Skipped)
		case r.Err != "":
			fmt.Fprintf(&b, "| `%s` | **gremlins failed**: %s | | | | | | | | | %.0f |\n", r.Pkg, mdCell(r.Err), r.Secs)
		default:
			fmt.Fprintf(&b, "| `%s` | %d | %d | %d | %d | %d | %d | %.2f%% | %.2f%% | %.2f%% | %.0f |\n", r.Pkg, r.Killed, r.Lived, r.Equiv,
				r.NotCovered, r.TimedOut, r.NotViable, r.Efficacy, r.EfficacyEquiv, r.MutatorCover, r.Secs)
		}
	}
	for _, r := range rs {
		if len(r.Survivors) == 0 {
			continue
		}
		fmt.Fprintf(&b, "\n### Survivors in `%s`\n\n", r.Pkg)
		fmt.Fprintf(&b, "Kill each LIVED one with a test, or list it in `%s` with the reason it cannot be killed. "+
			"NOT COVERED ones run under no test at all.\n\n", equiv)
		b.WriteString("| Where | Mutator | Status | Equivalent because |\n|---|---|---|---|\n")
		for _, s := range r.Survivors {
			fmt.Fprintf(&b, "| `%s:%d:%d` | %s | %s | %s |\n", s.File, s.Line, s.Col, s.Mutator, s.Status, mdCell(s.Equivalent))
		}
	}
	if len(stale) > 0 {
		b.WriteString("\nListed as equivalent but no longer reported (stale line numbers?): ")
		for i, s := range stale {
			if i > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "`%s`", s)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.

func rootPath(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

func moduleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(filepath.Join(wd, "go.mod")); err != nil {
		return "", errors.New("run from the module root (the directory holding go.mod)")
	}
	return wd, nil
}

// runCmd runs a command in its own process group, killed whole when bound passes.
func runCmd(dir string, bound time.Duration, name string, args ...string) (string, error) {
	return run(dir, bound, nil, nil, name, args...)
}

// run is runCmd that also copies the output to tee (if not nil) and adds env to the environment.
func run(dir string, bound time.Duration, tee io.Writer, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var buf bytes.Buffer
	var w io.Writer = &buf
	if tee != nil {
		w = io.MultiWriter(&buf, tee)
	}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	if ctx.Err() != nil {
		err = context.DeadlineExceeded
	}
	return buf.String(), err
}

func commitNote(root string) string {
	rev, err := runCmd(root, time.Minute, "git", "rev-parse", "--short", "HEAD")
	if err != nil {
		return "this tree"
	}
	note := "commit " + strings.TrimSpace(rev)
	if dirty, err := runCmd(root, time.Minute, "git", "status", "--porcelain", "--", "*.go", ":(exclude)scripts/mutants"); err == nil && strings.TrimSpace(dirty) != "" {
		note += " with uncommitted Go changes"
	}
	return note
}

const (
	reportTitle = "# Mutation testing\n\nWritten by `make mutants` (scripts/mutants); each section is rewritten by its own mode and the other is kept.\n"
)

// writeSection replaces the section between its markers in path, keeping the rest.
func writeSection(path, name, body string) error {
	begin, end := "<!-- BEGIN "+name+" -->", "<!-- END "+name+" -->"
	block := begin + "\n" + body + end + "\n"
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	text := string(old)
	if text == "" {
		text = reportTitle
	}
	i, j := strings.Index(text, begin), strings.Index(text, end)
	switch {
	case i >= 0 && j > i:
		text = text[:i] + block + strings.TrimPrefix(text[j+len(end):], "\n")
	case name == "curated":
		// The curated section goes before any other.
		if k := strings.Index(text, "<!-- BEGIN "); k >= 0 {
			text = text[:k] + block + "\n" + text[k:]
		} else {
			text = strings.TrimRight(text, "\n") + "\n\n" + block
		}
	default:
		text = strings.TrimRight(text, "\n") + "\n\n" + block
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(text), 0o644)
}

// shellJoin quotes the arguments that need it, so the recorded command can be pasted.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$*?|&;<>()[]{}\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

func mdCell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}

func head(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func indent(s string) string {
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
