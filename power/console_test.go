package power

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/power/ipmisim"
)

// syncBuffer is a bytes.Buffer safe for the console's writer and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestConsoleOverIPMISim: the node's serial port is a TCP socket ipmi_sim
// connects to when the console activates; what the node prints reaches the
// console's output, what is typed reaches the node, and ~. ends the session.
func TestConsoleOverIPMISim(t *testing.T) {
	l := newLab(t)
	var ln net.Listener
	require.NoError(t, l.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", "127.0.0.1:0")
		return err
	}))
	defer ln.Close()
	// The node's serial port: ipmi_sim connects when it starts; the "node"
	// answers each line typed on the console.
	typed := make(chan string, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 64)
		var got string
		for !strings.Contains(got, "\r") {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			got += string(buf[:n])
		}
		typed <- got
		_, _ = c.Write([]byte("node says: " + strings.TrimSpace(got) + "\r\n"))
		_, _ = io.Copy(io.Discard, c)
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dir := filepath.Join(t.TempDir(), "bmc")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	sim, err := ipmisim.Start(ctx, ipmisim.Options{
		Dir: dir, Addr: "127.0.1.40", Username: simUser, Password: simPass, Command: l.ns.Command,
		SOL: fmt.Sprintf("tcp:%s", ln.Addr().String()),
	})
	require.NoError(t, err)
	defer sim.Close()

	b := l.bmc(40, "lanplus")
	inR, inW := io.Pipe()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- b.Console(ctx, inR, &out) }()

	_, err = inW.Write([]byte("root\r"))
	require.NoError(t, err)
	select {
	case got := <-typed:
		assert.Equal(t, "root\r", got)
	case err := <-done:
		log, _ := os.ReadFile(filepath.Join(dir, "ipmi_sim.out"))
		t.Fatalf("console ended early: %v; ipmi_sim: %s", err, log)
	case <-time.After(15 * time.Second):
		t.Fatal("typed text did not reach the node")
	}
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "node says: root\r\n") }, 10*time.Second, 50*time.Millisecond)
	_, err = inW.Write([]byte("~."))
	require.NoError(t, err)
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("~. did not end the console")
	}

	lan := l.bmc(40, "lan")
	assert.ErrorContains(t, lan.Console(ctx, strings.NewReader(""), io.Discard), "set ipmi interface lanplus")
}

func TestEscapeReader(t *testing.T) {
	read := func(in string, esc byte) string {
		b, err := io.ReadAll(iotest.OneByteReader(newEscapeReader(strings.NewReader(in), esc)))
		require.NoError(t, err)
		return string(b)
	}
	assert.Equal(t, "ls\r", read("ls\r~.rest", '~'))
	assert.Equal(t, "", read("~.", '~'))
	assert.Equal(t, "a~.b", read("a~.b", '~'), "only at the start of a line")
	assert.Equal(t, "~x\n", read("~x\n&.", '&'))
	assert.Equal(t, "~~\r", read("~~\r~.", '~'))
	assert.Equal(t, "x\r~", read("x\r~", '~'))
}
