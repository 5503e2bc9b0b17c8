package inabit

import (
	"runtime/debug"
	"strings"

	version "github.com/hashicorp/go-version"
)

// Version is the release stamp, set by release builds (make build, make release) with
// -ldflags "-X github.com/inabit/vault-plugin-secrets-inabit.Version=v1.2.3". Without it the
// plugin reports the module version Go recorded, which `go install …@v1.2.3` sets to v1.2.3
// (runningVersion).
var Version string

// devVersion is reported by a build that has neither a stamp nor a module version: go build with
// -buildvcs=false, go run, go test.
const devVersion = "v0.1.0-dev"

// runningVersion is the version the plugin reports to Vault (RunningVersion), which Vault compares
// with `vault plugin register -version=`: the stamp when there is one, else the main module's
// version from the build info when Go recorded a real one, else devVersion. Vault refuses a
// reported version that is not semantic; Go's module versions always are, with a leading v, and
// "(devel)" (a build in a checkout without VCS stamping) is not one.
func runningVersion(stamped string, info *debug.BuildInfo, ok bool) string {
	if stamped != "" {
		return stamped
	}
	if ok && info != nil && strings.HasPrefix(info.Main.Version, "v") {
		if _, err := version.NewSemver(info.Main.Version); err == nil {
			return info.Main.Version
		}
	}
	return devVersion
}

// pluginVersion is runningVersion for this binary.
func pluginVersion() string {
	info, ok := debug.ReadBuildInfo()
	return runningVersion(Version, info, ok)
}
