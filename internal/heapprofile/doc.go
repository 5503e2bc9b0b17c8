// Package heapprofile, in a build with the inabit_heapprofile tag only, writes a heap profile of
// the process each time it receives SIGUSR1: into $INABIT_HEAP_PROFILE_DIR (the temp directory
// when unset) as heap-<pid>-<n>.pprof, after a GC, with an allocation sampled every 4 KB on
// average. The plugin and the benchmark's floor plugin import it for this side effect, so that a
// plugin process serving hundreds of mounts inside a real Vault can be asked where its memory
// goes (issue 19):
//
//	go build -tags inabit_heapprofile -o bin/vault-plugin-secrets-inabit ./cmd/vault-plugin-secrets-inabit
//	kill -USR1 <plugin pid>; go tool pprof -sample_index=inuse_space -top heap-<pid>-1.pprof
//
// Without the tag the package is empty and changes nothing: release builds never have it.
package heapprofile
