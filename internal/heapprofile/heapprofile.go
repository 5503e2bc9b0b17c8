//go:build inabit_heapprofile

package heapprofile

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"syscall"
)

func init() {
	runtime.MemProfileRate = 4096
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGUSR1)
	go func() {
		for n := 1; ; n++ {
			<-sig
			dir := os.Getenv("INABIT_HEAP_PROFILE_DIR")
			if dir == "" {
				dir = os.TempDir()
			}
			runtime.GC()
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("heap-%d-%d.pprof", os.Getpid(), n)))
			if err != nil {
				continue
			}
			_ = pprof.WriteHeapProfile(f)
			_ = f.Close()
		}
	}()
}
