package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseAndApply(t *testing.T) {
	list := `# comment
## keep-the-check: the check stays
file: a.go
- if x > 0 {
- return y
+ if x >= 0 {
+ return y

## drop-line: a line is deleted
file: a.go
- z++
`
	muts, err := ParseList(list)
	if err != nil {
		t.Fatal(err)
	}
	if len(muts) != 2 || muts[0].Name != "keep-the-check" || muts[0].Desc != "the check stays" || muts[1].Name != "drop-line" {
		t.Fatalf("parsed %+v", muts)
	}
	dir := t.TempDir()
	src := "package a\n\nfunc f(x, y, z int) int {\n\tif x > 0 {\n\t\treturn y\n\t}\n\tz++\n\treturn z\n}\n"
	if err := os.WriteFile(filepath.Join(dir, "a.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := muts[0].Apply(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.Replace(src, "if x > 0 {\n\t\treturn y", "if x >= 0 {\nreturn y", 1); got["a.go"] != want {
		t.Errorf("mutated:\n%s\nwant:\n%s", got["a.go"], want)
	}
	got, err = muts[1].Apply(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(got["a.go"], "z++") {
		t.Errorf("z++ not deleted:\n%s", got["a.go"])
	}
}

func TestApplyNeedsExactlyOneMatch(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.go"), []byte("x := 1\nx := 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ old, want string }{{"x := 1", "occurs 2 times"}, {"y := 1", "occurs 0 times"}} {
		m := Mutation{Name: "m", Hunks: []Hunk{{File: "a.go", Old: []string{tc.old}, New: []string{"x := 2"}}}}
		if _, err := m.Apply(dir); err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "mutation m") {
			t.Errorf("%q: got %v, want an error naming the mutation and %q", tc.old, err, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, list := range []string{
		"## Bad_Name: x\nfile: a.go\n- a\n",
		"## no-desc\nfile: a.go\n- a\n",
		"## no-file: x\n- a\n",
		"## no-lines: x\nfile: a.go\n",
		"## plus-first: x\nfile: a.go\n+ a\n",
		"## dup: x\nfile: a.go\n- a\n## dup: y\nfile: a.go\n- b\n",
		"stray text\n",
	} {
		if _, err := ParseList(list); err == nil {
			t.Errorf("no error for %q", list)
		}
	}
}

func TestClassify(t *testing.T) {
	exitErr := func() error {
		err := exec.Command("false").Run()
		if err == nil {
			t.Skip("no false(1)")
		}
		return err
	}()
	for _, tc := range []struct {
		out             string
		err             error
		outcome, killer string
	}{
		{"ok  \tpkg\t1.0s\n", nil, Survived, ""},
		{"--- FAIL: TestA/sub (0.01s)\n--- FAIL: TestA (0.01s)\nFAIL\tpkg\t1s\n", exitErr, Killed, "TestA/sub"},
		{"# pkg\n./a.go:1: undefined: x\nFAIL\tpkg [build failed]\n", exitErr, BuildError, ""},
		{"panic: test timed out after 1m0s\nrunning tests:\n\tTestSlow (1m0s)\n", exitErr, Timeout, "TestSlow (timed out)"},
		{"panic: boom\n\ngoroutine 1\nFAIL\tpkg\t0.1s\n", exitErr, Killed, "panic in pkg"},
	} {
		outcome, killer, _ := classify(tc.out, tc.err)
		if outcome != tc.outcome || killer != tc.killer {
			t.Errorf("classify(%q) = %s, %q; want %s, %q", tc.out, outcome, killer, tc.outcome, tc.killer)
		}
	}
}

func TestWriteSectionKeepsTheOther(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.md")
	for _, s := range []struct{ name, body string }{{"gremlins", "G1\n"}, {"curated", "C1\n"}, {"gremlins", "G2\n"}} {
		if err := writeSection(p, s.name, s.body); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	if !strings.Contains(text, "C1") || !strings.Contains(text, "G2") || strings.Contains(text, "G1") ||
		strings.Index(text, "C1") > strings.Index(text, "G2") {
		t.Errorf("report:\n%s", text)
	}
}

func TestEquivalents(t *testing.T) {
	p := filepath.Join(t.TempDir(), "eq.txt")
	if err := os.WriteFile(p, []byte("# c\ninternal/x/foo.go:12:conditionals_boundary  the bound is never reached\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	eq, err := readEquivalents(p)
	if err != nil {
		t.Fatal(err)
	}
	rep := gremlinsReport{Files: []gremlinsFile{{FileName: "foo.go"}}}
	add := func(line int, typ, status string) {
		rep.Files[0].Mutations = append(rep.Files[0].Mutations, gremlinsMutation{Line: line, Column: 1, Type: typ, Status: status})
	}
	for i := 0; i < 8; i++ {
		add(1, "ARITHMETIC_BASE", "KILLED")
	}
	add(12, "CONDITIONALS_BOUNDARY", "LIVED")
	add(13, "CONDITIONALS_NEGATION", "LIVED")
	pr := pkgResult{}
	tally(&pr, rep, "./internal/x", eq, map[string]bool{})
	if pr.Killed != 8 || pr.Lived != 2 || pr.Equiv != 1 || pr.Efficacy != 80 || pr.EfficacyEquiv < 88.8 || pr.EfficacyEquiv > 88.9 {
		t.Errorf("tally = %+v", pr)
	}
	if _, err := readEquivalents(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("a missing equivalents file is empty, got %v", err)
	}
	if err := os.WriteFile(p, []byte("foo.go:x:M reason\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := readEquivalents(p); err == nil || errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad line accepted: %v", err)
	}
}
