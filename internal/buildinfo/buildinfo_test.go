package buildinfo

import (
	"runtime/debug"
	"testing"
)

func TestVersion(t *testing.T) {
	for _, tc := range []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"tagged main module", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v1.2.3"}}, "v1.2.3"},
		{"pseudo-version", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "v0.0.0-20261205070000-0123456789ab+dirty"}}, "v0.0.0-20261205070000-0123456789ab+dirty"},
		{"dependency of a Caddy build", debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{{Path: modulePath, Version: "v1.4.0"}}}, "v1.4.0"},
		{"local replacement", debug.BuildInfo{Main: debug.Module{Path: "caddy"}, Deps: []*debug.Module{{Path: modulePath, Version: "v0.0.0", Replace: &debug.Module{Path: "/src/taskgate"}}}}, "devel"},
		{"revision only", debug.BuildInfo{Main: debug.Module{Path: modulePath, Version: "(devel)"}, Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "true"}}}, "devel+0123456789ab+dirty"},
		{"nothing", debug.BuildInfo{}, "devel"},
	} {
		if got := version(&tc.info); got != tc.want {
			t.Errorf("%s: version = %q, want %q", tc.name, got, tc.want)
		}
	}
	if UserAgent() != "taskgate/"+Version() {
		t.Errorf("UserAgent() = %q", UserAgent())
	}
}
