package inabit

// Memory per mount (issue 19): many API users on one Vault means hundreds of mounts in this one
// plugin process. TestMemoryPerMount measures what each mount costs the process itself (heap and
// goroutine stacks, after GC), mount by mount through Factory as Vault's SDK calls it, against a
// mock inabit in another process so that the mock's own connections are not counted. It leaves
// out what the SDK's gRPC plumbing costs per mount, the same for every plugin (the bench's floor
// plugin shows it).
//
//	go test -run 'TestMemoryPerMount$' -mountmem 200 [-mountmem.profile heap.pprof] .
//	go tool pprof -sample_index=inuse_space -top heap.pprof

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/vault/sdk/logical"

	"github.com/inabit/vault-plugin-secrets-inabit/internal/mockinabit"
)

var (
	mountMemN       = flag.Int("mountmem", 0, "TestMemoryPerMount: how many mounts to measure (0 skips it)")
	mountMemProfile = flag.String("mountmem.profile", "", "TestMemoryPerMount: write a heap profile (every allocation sampled) here once the mounts have read a token, and another to <name>.idle.pprof once their idle connections are closed")
)

// mountMemMockEnv makes the test binary serve a mock with that many extra users (the helper
// process of TestMemoryPerMount).
const mountMemMockEnv = "INABIT_MOUNTMEM_MOCK_USERS"

// TestMountMemMockProcess is not a test: run with mountMemMockEnv set, it serves the mock on
// loopback, prints {"url":…,"tokens":[…]} and serves until its stdin closes.
func TestMountMemMockProcess(t *testing.T) {
	n, err := strconv.Atoi(os.Getenv(mountMemMockEnv))
	if err != nil {
		t.Skip("the mock process of TestMemoryPerMount")
	}
	m := mockinabit.New(mockinabit.Options{})
	var out struct {
		URL    string   `json:"url"`
		Tokens []string `json:"tokens"`
	}
	for _, u := range m.CreateUsers(n) {
		out.Tokens = append(out.Tokens, u.LoginToken)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	out.URL = "http://" + ln.Addr().String() + "/graphql"
	go func() { _ = http.Serve(ln, m.Handler()) }()
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		t.Fatal(err)
	}
	_, _ = bufio.NewReader(os.Stdin).ReadString(0) // until stdin closes
}

// startMockProcess runs TestMountMemMockProcess in a child process with n users.
func startMockProcess(t *testing.T, n int) (url string, tokens []string) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestMountMemMockProcess$")
	cmd.Env = append(os.Environ(), mountMemMockEnv+"="+strconv.Itoa(n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stdin.Close(); _ = cmd.Wait() })
	var out struct {
		URL    string   `json:"url"`
		Tokens []string `json:"tokens"`
	}
	if err := json.NewDecoder(stdout).Decode(&out); err != nil || len(out.Tokens) != n {
		t.Fatalf("mock process: %v (%d tokens)", err, len(out.Tokens))
	}
	return out.URL, out.Tokens
}

type memSample struct {
	heap, alloc, stack uint64
	goroutines         int
}

func memNow() memSample {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return memSample{heap: ms.HeapInuse, alloc: ms.HeapAlloc, stack: ms.StackInuse, goroutines: runtime.NumGoroutine()}
}

// perMount is (cur - base) / n in KB (1 KB = 1000 bytes, as /proc's kB are read in the bench).
func perMount(cur, base uint64, n int) float64 {
	return (float64(cur) - float64(base)) / float64(n) / 1000
}

func TestMemoryPerMount(t *testing.T) {
	n := *mountMemN
	if n <= 0 {
		t.Skip("run with -mountmem N")
	}
	url, tokens := startMockProcess(t, n)
	if *mountMemProfile != "" {
		runtime.MemProfileRate = 1
	}
	ctx := context.Background()
	backends := make([]*backend, n)
	storages := make([]logical.Storage, n)
	do := func(i int, op logical.Operation, path string, data map[string]interface{}) {
		resp, err := backends[i].HandleRequest(ctx, &logical.Request{Operation: op, Path: path, Data: data, Storage: storages[i]})
		if err == nil && resp != nil && resp.IsError() {
			err = resp.Error()
		}
		if err != nil {
			t.Fatalf("mount %d: %s %s: %v", i, op, path, err)
		}
	}
	base := memNow()
	report := func(stage string) memSample {
		cur := memNow()
		t.Logf("%-55s HeapInuse %5.1f, HeapAlloc %5.1f, StackInuse %4.1f KB/mount, %4.2f goroutines/mount",
			stage, perMount(cur.heap, base.heap, n), perMount(cur.alloc, base.alloc, n), perMount(cur.stack, base.stack, n),
			float64(cur.goroutines-base.goroutines)/float64(n))
		return cur
	}

	// One logger for every mount: the SDK's multiplexed server hands every mount the same one.
	logger := hclog.New(&hclog.LoggerOptions{Output: io.Discard})
	for i := range backends {
		conf := logical.TestBackendConfig()
		conf.Logger = logger
		storages[i] = &logical.InmemStorage{}
		conf.StorageView = storages[i]
		raw, err := Factory(ctx, conf)
		if err != nil {
			t.Fatal(err)
		}
		backends[i] = raw.(*backend)
	}
	t.Cleanup(func() {
		for _, b := range backends {
			b.Cleanup(ctx)
		}
	})
	report(fmt.Sprintf("%d mounts made by Factory", n))
	for i := range backends {
		do(i, logical.UpdateOperation, "config", map[string]interface{}{"login_token": tokens[i], "url": url})
	}
	report("config written (verified: one access token fetched)")
	for i := range backends {
		do(i, logical.ReadOperation, "token", nil)
		do(i, logical.ReadOperation, "static-token", nil)
		do(i, logical.ReadOperation, "config", nil)
	}
	report("token, static-token and config read")
	writeProfile(t, *mountMemProfile)
	tickStart := time.Now()
	for i := range backends {
		do(i, logical.RollbackOperation, "", nil)
	}
	t.Logf("one periodic tick each took %s in all, %s per mount (no rotation due)", time.Since(tickStart).Round(time.Millisecond), (time.Since(tickStart) / time.Duration(n)).Round(time.Microsecond))
	report("one periodic tick each")
	for _, b := range backends {
		b.clientMu.Lock()
		b.client.CloseIdle()
		b.clientMu.Unlock()
	}
	report("idle connections closed (as 90 s after the last call)")
	writeProfile(t, strings.TrimSuffix(*mountMemProfile, ".pprof")+".idle.pprof")
}

// writeProfile writes a heap profile to path, unless no profile was asked for.
func writeProfile(t *testing.T, path string) {
	if *mountMemProfile == "" {
		return
	}
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.WriteHeapProfile(f); err != nil {
		t.Fatal(err)
	}
}
