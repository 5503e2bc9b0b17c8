package inabit

import (
	"runtime/debug"
	"testing"
)

// The version the plugin reports to Vault: the release stamp (-ldflags -X ...Version=) when there
// is one, else the module version Go recorded for `go install …@vX.Y.Z`, else devVersion. Vault
// compares it with `vault plugin register -version=`, so a binary installed at a tag must report
// that tag, and whatever is reported must be a semantic version with a leading v.
func TestRunningVersionIsTheStampElseTheModuleVersion(t *testing.T) {
	built := func(v string) *debug.BuildInfo {
		return &debug.BuildInfo{Main: debug.Module{Path: "github.com/inabit/vault-plugin-secrets-inabit", Version: v}}
	}
	cases := []struct {
		name    string
		stamped string
		info    *debug.BuildInfo
		ok      bool
		want    string
	}{
		{"release build: the stamp wins", "v0.2.0", built("v0.3.0"), true, "v0.2.0"},
		{"stamp without build info", "v0.2.0", nil, false, "v0.2.0"},
		{"go install …@v0.2.0", "", built("v0.2.0"), true, "v0.2.0"},
		{"go install …@v1.0.0-rc.1", "", built("v1.0.0-rc.1"), true, "v1.0.0-rc.1"},
		{"go install …@<commit>: its pseudo-version", "", built("v0.2.1-0.20261201120000-0123456789ab"), true, "v0.2.1-0.20261201120000-0123456789ab"},
		{"go build in a checkout with VCS stamping", "", built("v0.2.0+dirty"), true, "v0.2.0+dirty"},
		{"go build with -buildvcs=false, go run, go test", "", built("(devel)"), true, devVersion},
		{"no main module version", "", built(""), true, devVersion},
		{"no build info", "", nil, false, devVersion},
		{"not a semantic version", "", built("latest"), true, devVersion},
		{"no leading v", "", built("0.2.0"), true, devVersion},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := runningVersion(tc.stamped, tc.info, tc.ok); got != tc.want {
				t.Fatalf("runningVersion(%q, %v) = %q, want %q", tc.stamped, tc.info, got, tc.want)
			}
		})
	}
}
