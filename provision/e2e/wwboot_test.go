package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/wwboot/wwboot/provision/netlab"
)

// wwboot runs the real wwboot binary against one state directory, inside the
// lab namespace, and logs every command line it runs (the demo shows them).
type wwboot struct {
	bin, root string
	lab       *netlab.NS
	client    *http.Client // dials inside the lab namespace
}

// newWwboot builds cmd/wwboot (or takes -wwboot) and picks a fresh state
// directory.
func newWwboot(t *testing.T, lab *netlab.NS) *wwboot {
	t.Helper()
	w := &wwboot{bin: *flagWwboot, root: filepath.Join(t.TempDir(), "wwboot"), lab: lab, client: labClient(lab)}
	if w.bin == "" {
		_, file, _, ok := runtime.Caller(0)
		if !ok {
			t.Fatal("e2e: cannot locate the source tree to build cmd/wwboot: pass -wwboot BINARY")
		}
		repo := filepath.Join(filepath.Dir(file), "..", "..")
		w.bin = filepath.Join(t.TempDir(), "wwboot")
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, "go", "build", "-o", w.bin, "./cmd/wwboot")
		cmd.Dir = repo
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/wwboot (in %s): %v\n%s", repo, err, out)
		}
		t.Logf("$ go build -o %s ./cmd/wwboot   (%.1fs)", w.bin, time.Since(start).Seconds())
		// The node agent, next to wwboot, where wwboot serve finds it for
		// the wwclient overlay (with -wwboot BINARY, put it beside BINARY).
		agent := filepath.Join(filepath.Dir(w.bin), "wwboot-agent")
		cmd = exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", agent, "./cmd/wwboot-agent")
		cmd.Dir = repo
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./cmd/wwboot-agent (in %s): %v\n%s", repo, err, out)
		}
	}
	return w
}

// command returns `wwboot --root ROOT ARGS...` to run in the lab namespace.
func (w *wwboot) command(ctx context.Context, args ...string) *exec.Cmd {
	return w.lab.Command(ctx, w.bin, append([]string{"--root", w.root}, args...)...)
}

// run runs one wwboot command to completion, logs it with its output, and
// fails the test if it fails.
func (w *wwboot) run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := w.try(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// try is run without failing the test, for goroutines other than the
// test's own (a console watcher, say).
func (w *wwboot) try(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	out, err := w.command(ctx, args...).CombinedOutput()
	t.Logf("$ wwboot --root %s %s   (%.1fs)\n%s", w.root, strings.Join(args, " "), time.Since(start).Seconds(), indent(out))
	if err != nil {
		return string(out), fmt.Errorf("wwboot %s: %w", strings.Join(args, " "), err)
	}
	return string(out), nil
}

// serve starts `wwboot serve ARGS...` in the lab namespace, waits until it
// answers /healthz, and stops it with SIGTERM when the test ends, checking
// that it drained and exited 0.
func (w *wwboot) serve(t *testing.T, args ...string) {
	t.Helper()
	args = append([]string{"serve"}, args...)
	cmd := w.command(context.Background(), args...)
	logs := &serverLog{t: t, stream: *flagConsole}
	cmd.Stdout, cmd.Stderr = logs, logs
	cmd.WaitDelay = 10 * time.Second
	t.Logf("$ wwboot --root %s %s &", w.root, strings.Join(args, " "))
	if err := cmd.Start(); err != nil {
		t.Fatalf("start wwboot serve: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		// SIGTERM: stop taking requests, let transfers under way finish,
		// exit 0.
		start := time.Now()
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			assert.NoError(t, err, "wwboot serve exits 0 after SIGTERM")
			assert.Contains(t, logs.String(), "draining", "wwboot serve drains on SIGTERM")
			t.Logf("wwboot serve stopped %.2fs after SIGTERM", time.Since(start).Seconds())
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("wwboot serve did not stop within 60 s of SIGTERM")
		}
		if t.Failed() && !*flagConsole {
			t.Logf("wwboot serve log:\n%s", indent([]byte(logs.String())))
		}
	})
	deadline := time.Now().Add(2 * time.Minute)
	for {
		select {
		case err := <-exited:
			stopped = true
			t.Fatalf("wwboot serve exited: %v\n%s", err, logs.String())
		default:
		}
		resp, err := w.client.Get("http://" + serverIP + ":" + httpPort + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		if time.Now().After(deadline) {
			t.Fatalf("wwboot serve does not answer /healthz: %v\n%s", err, logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// serverLog keeps wwboot serve's log and, with -console, logs each line as
// it comes.
type serverLog struct {
	t      *testing.T
	stream bool
	mu     sync.Mutex
	all    bytes.Buffer
	part   []byte
}

func (l *serverLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.Write(p)
	if l.stream {
		l.part = append(l.part, p...)
		for {
			i := bytes.IndexByte(l.part, '\n')
			if i < 0 {
				break
			}
			l.t.Logf("wwboot serve | %s", l.part[:i])
			l.part = l.part[i+1:]
		}
	}
	return len(p), nil
}

func (l *serverLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.all.String()
}

// indent prefixes each line of out for the test log.
func indent(out []byte) string {
	s := strings.TrimRight(string(out), "\n")
	if s == "" {
		return ""
	}
	return "    " + strings.ReplaceAll(s, "\n", "\n    ")
}
