package main

import (
	"os"
	"os/exec"
	"path/filepath"
)

// agentName is the node agent binary's name, built from ./cmd/wwboot-agent.
const agentName = "wwboot-agent"

// agentPath finds the node agent binary the wwclient overlay delivers:
// wwboot.conf's agent when set, else wwboot-agent next to the running
// wwboot executable (where `go build -o DIR/ ./cmd/...` and packages put
// it), else on $PATH. found is false when there is none: path is then where
// it was expected, and rendering wwclient fails with an error naming it and
// the build command.
func agentPath(configured string) (path string, found bool) {
	if configured != "" {
		_, err := os.Stat(configured)
		return configured, err == nil
	}
	var next string
	if exe, err := os.Executable(); err == nil {
		if exe, err := filepath.EvalSymlinks(exe); err == nil {
			next = filepath.Join(filepath.Dir(exe), agentName)
			if fi, err := os.Stat(next); err == nil && fi.Mode().IsRegular() {
				return next, true
			}
		}
	}
	if p, err := exec.LookPath(agentName); err == nil {
		if abs, err := filepath.Abs(p); err == nil {
			return abs, true
		}
	}
	if next == "" {
		next = filepath.Join("/usr/local/bin", agentName)
	}
	return next, false
}
