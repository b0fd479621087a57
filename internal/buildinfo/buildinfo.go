// Package buildinfo tells which taskgate and which Caddy a binary is, from
// the build information Go embeds, for `taskgate version`, the start-up log
// line and the User-Agent of calls to sources and webhooks.
package buildinfo

import (
	"runtime/debug"
	"strings"

	"github.com/caddyserver/caddy/v2"
)

// modulePath is taskgate's module path.
const modulePath = "github.com/taskgate/taskgate"

// stamped is the version set at link time (`make` passes `git describe`:
// -ldflags "-X github.com/taskgate/taskgate/internal/buildinfo.stamped=…"),
// which both builds carry; empty otherwise.
var stamped string

// Version returns taskgate's version: the one stamped at link time, else
// the module version it was built at
// (a release tag, or Go's pseudo-version from the checkout, with
// "+dirty" for uncommitted changes), or "devel" when the build carries
// none (a local replacement, as in `make build`, carries the revision of
// the checkout when Go recorded one).
func Version() string {
	if stamped != "" {
		return stamped
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	return version(info)
}

func version(info *debug.BuildInfo) string {
	if info.Main.Path == modulePath && usable(info.Main.Version) {
		return info.Main.Version
	}
	for _, dep := range info.Deps {
		if dep.Path != modulePath {
			continue
		}
		if dep.Replace == nil && usable(dep.Version) {
			return dep.Version
		}
	}
	if rev := setting(info, "vcs.revision"); rev != "" {
		v := "devel+" + rev[:min(12, len(rev))]
		if setting(info, "vcs.modified") == "true" {
			v += "+dirty"
		}
		return v
	}
	return "devel"
}

// usable tells whether a module version says something: not empty, not
// "(devel)", not the v0.0.0 placeholder of a local replacement.
func usable(v string) bool {
	return v != "" && v != "(devel)" && v != "v0.0.0"
}

func setting(info *debug.BuildInfo, key string) string {
	for _, s := range info.Settings {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

// CaddyVersion returns the version of the Caddy inside ("v2.11.9").
func CaddyVersion() string {
	simple, _ := caddy.Version()
	return strings.TrimSuffix(simple, "_custom")
}

// UserAgent names taskgate and its version, as sent to sources and
// webhooks: "taskgate/<version>".
func UserAgent() string { return "taskgate/" + Version() }
