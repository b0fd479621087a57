// Command xcaddyargs turns the build manifest xcaddy.toml into the
// arguments of `xcaddy build`, one per line.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// manifest is the shape of xcaddy.toml.
type manifest struct {
	// Caddy is the Caddy version to build, such as "v2.11.9".
	Caddy string `toml:"caddy"`
	// Output is the file to write.
	Output string `toml:"output"`
	// Plugins are the modules to build in.
	Plugins []plugin `toml:"plugins"`
}

type plugin struct {
	// Module is the Go module path.
	Module string `toml:"module"`
	// Version is the module version; empty means latest.
	Version string `toml:"version"`
	// Replace is a local directory to build the module from.
	Replace string `toml:"replace"`
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: xcaddyargs xcaddy.toml")
		os.Exit(2)
	}
	args, err := buildArgs(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "xcaddyargs:", err)
		os.Exit(1)
	}
	fmt.Println(strings.Join(args, "\n"))
}

func buildArgs(path string) ([]string, error) {
	var m manifest
	md, err := toml.DecodeFile(path, &m)
	if err != nil {
		return nil, err
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		return nil, fmt.Errorf("%s: unknown key %s", path, keys[0])
	}
	if m.Caddy == "" {
		return nil, errors.New(path + ": caddy (the version) is required")
	}
	args := []string{m.Caddy}
	if m.Output != "" {
		args = append(args, "--output", m.Output)
	}
	dir := filepath.Dir(path)
	for _, p := range m.Plugins {
		if p.Module == "" {
			return nil, errors.New(path + ": a plugin has no module")
		}
		with := p.Module
		if p.Version != "" {
			with += "@" + p.Version
		}
		if p.Replace != "" {
			r := p.Replace
			if !filepath.IsAbs(r) {
				abs, err := filepath.Abs(filepath.Join(dir, r))
				if err != nil {
					return nil, err
				}
				r = abs
			}
			with += "=" + r
		}
		args = append(args, "--with", with)
	}
	return args, nil
}
