//go:build inabit_heapprofile

package main

// Only a build with -tags inabit_heapprofile (the benchmark's, when asked) writes a heap profile
// on SIGUSR1; release builds never import the package (issue 19).
import _ "github.com/inabit/vault-plugin-secrets-inabit/internal/heapprofile"
