// Package integration holds taskgate's black-box tests: they build the
// binary, start it on free loopback ports with temporary configs and talk
// HTTP to it, as a client or an operator would.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// taskgateBin is the binary under test, built once by TestMain.
var taskgateBin string

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	// TASKGATE_BIN tests a binary built elsewhere, such as the one
	// `make build` makes with xcaddy.
	if bin := os.Getenv("TASKGATE_BIN"); bin != "" {
		abs, err := filepath.Abs(bin)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "integration: TASKGATE_BIN:", err)
			return 1
		}
		taskgateBin = abs
		return m.Run()
	}

	root, err := filepath.Abs("..")
	if err == nil {
		_, err = os.Stat(filepath.Join(root, "go.mod"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration: module root not found next to the test directory:", err)
		return 1
	}
	dir, err := os.MkdirTemp("", "taskgate-integration-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	taskgateBin = filepath.Join(dir, "taskgate")
	build := exec.Command(goTool(), "build", "-o", taskgateBin, "./cmd/taskgate")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "integration: building taskgate:", err)
		return 1
	}
	return m.Run()
}

// goTool finds the go command: $GOROOT/bin/go as `go test` sets it, else
// the one on PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); fileExists(p) {
			return p
		}
	}
	return "go"
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
