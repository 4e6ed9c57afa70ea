package tftp

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	ptftp "github.com/pin/tftp/v3"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// oackOptions parses an OACK body into its options.
func oackOptions(t *testing.T, body []byte) map[string]string {
	t.Helper()
	parts := bytes.Split(bytes.TrimSuffix(body, []byte{0}), []byte{0})
	require.Equal(t, 0, len(parts)%2, "OACK %q has an odd number of strings", body)
	m := map[string]string{}
	for i := 0; i+1 < len(parts); i += 2 {
		m[string(parts[i])] = string(parts[i+1])
	}
	return m
}

// rfcServer serves a 3000-byte file f and the iPXE binary under the name
// Warewulf's DHCP templates use, on loopback.
func rfcServer(t *testing.T) (*net.UDPConn, []byte) {
	t.Helper()
	data := bytes.Repeat([]byte("0123456789"), 300)
	files := fstest.MapFS{
		"f":                                {Data: data},
		"x":                                {Data: []byte("root x")},
		"warewulf/ipxe-snponly-x86_64.efi": {Data: []byte("snponly")},
	}
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	serveLoopback(t, &Server{FS: files, Timeout: 200 * time.Millisecond}, conn)
	return conn, data
}

// fetch runs a whole read with a raw client: request, OACK (acknowledged
// with block 0) if any, then DATA blocks until a short one. It returns the
// options the server acknowledged (nil without OACK), the block size seen
// in the first DATA packet and the file.
func fetch(t *testing.T, server net.Addr, pkt []byte) (map[string]string, int, []byte) {
	t.Helper()
	c := newRawClient(t)
	c.send(server, pkt)
	op, body := c.recv()
	var opts map[string]string
	if op == 6 {
		opts = oackOptions(t, body)
		c.send(c.peer, ack(0))
		op, body = c.recv()
	}
	require.Equal(t, uint16(3), op, "want DATA, got op %d %q", op, body)
	first := len(body) - 2
	bs := 512
	if v, ok := opts["blksize"]; ok {
		var err error
		bs, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	var out []byte
	for block := uint16(1); ; block++ {
		require.Equal(t, uint16(3), op, "want DATA, got op %d %q", op, body)
		require.Equal(t, block, binary.BigEndian.Uint16(body))
		require.LessOrEqual(t, len(body)-2, bs)
		out = append(out, body[2:]...)
		c.send(c.peer, ack(block))
		if len(body)-2 < bs {
			break
		}
		op, body = c.recv()
	}
	return opts, first, out
}

// rawRRQ is a read request with any mode and options.
func rawRRQ(name, mode string, opts ...string) []byte {
	p := append([]byte{0, 1}, name...)
	p = append(p, 0)
	p = append(p, mode...)
	p = append(p, 0)
	for _, o := range opts {
		p = append(p, o...)
		p = append(p, 0)
	}
	return p
}

// TestLeadingSlashIsTheRoot: names with leading slashes, which Warewulf's
// DHCP templates hand out, are served from the root, as tftp-hpa -s and
// dnsmasq serve them (issue 11 item 11).
func TestLeadingSlashIsTheRoot(t *testing.T) {
	conn, _ := rfcServer(t)
	for name, want := range map[string]string{
		"/warewulf/ipxe-snponly-x86_64.efi":   "snponly",
		"//warewulf//ipxe-snponly-x86_64.efi": "snponly",
		"//x":                                 "root x",
		"/./x":                                "root x",
	} {
		_, _, got := fetch(t, conn.LocalAddr(), rrq(name))
		assert.Equal(t, want, string(got), name)
	}
	for _, name := range []string{"/", "//", "/../x", "//../../etc/passwd", "/warewulf/../../x", "/C:x"} {
		c := newRawClient(t)
		c.send(conn.LocalAddr(), rrq(name))
		op, body := c.recv()
		require.Equal(t, uint16(5), op, "%q: want ERROR", name)
		assert.Equal(t, uint16(codeAccessViolation), binary.BigEndian.Uint16(body), "%q: error code", name)
	}
}

// TestOptionNegotiation walks the corners of RFC 2347 (option extension),
// RFC 2348 (blksize) and RFC 2349 (timeout, tsize) on a read request.
func TestOptionNegotiation(t *testing.T) {
	conn, data := rfcServer(t)
	for _, tc := range []struct {
		name  string
		opts  []string
		oack  map[string]string // nil: no OACK at all
		block int
	}{
		{"no options: no OACK", nil, nil, 512},
		{"blksize 1024", []string{"blksize", "1024"}, map[string]string{"blksize": "1024"}, 1024},
		{"option names are case-insensitive", []string{"BlkSize", "1024", "TSIZE", "0"}, map[string]string{"blksize": "1024", "tsize": "3000"}, 1024},
		{"one option spelled twice: a deterministic choice", []string{"blksize", "1024", "BLKSIZE", "2048"}, map[string]string{"blksize": "2048"}, 2048},
		{"blksize above 65464 is lowered to 65464", []string{"blksize", "100000"}, map[string]string{"blksize": "65464"}, 65464},
		{"blksize 65464", []string{"blksize", "65464"}, map[string]string{"blksize": "65464"}, 65464},
		{"blksize below 512 is declined: 512-byte blocks", []string{"blksize", "8"}, nil, 512},
		{"blksize below 8 is invalid and ignored", []string{"blksize", "7"}, nil, 512},
		{"blksize that is no number is ignored", []string{"blksize", "1k"}, nil, 512},
		{"blksize negative is ignored", []string{"blksize", "-1024"}, nil, 512},
		{"tsize 0 is answered with the size", []string{"tsize", "0"}, map[string]string{"tsize": "3000"}, 512},
		{"tsize that is no number is ignored", []string{"tsize", "x"}, nil, 512},
		{"timeout is not acknowledged", []string{"timeout", "3"}, nil, 512},
		{"timeout out of range is not acknowledged", []string{"timeout", "0", "blksize", "1024"}, map[string]string{"blksize": "1024"}, 1024},
		{"timeout 256", []string{"timeout", "256", "tsize", "0"}, map[string]string{"tsize": "3000"}, 512},
		{"unknown options are ignored", []string{"windowsize", "8", "foo", "bar", "tsize", "0"}, map[string]string{"tsize": "3000"}, 512},
		{"only unknown options: no OACK", []string{"multicast", "", "foo", "bar"}, nil, 512},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts, block, got := fetch(t, conn.LocalAddr(), rrq("f", tc.opts...))
			assert.Equal(t, tc.oack, opts, "OACK options")
			assert.Equal(t, min(tc.block, len(data)), block, "first DATA block size")
			assert.Equal(t, data, got)
		})
	}
}

// TestErrorCodes: every refusal carries its RFC 1350 error code, not
// pin/tftp's blanket 1 (file not found).
func TestErrorCodes(t *testing.T) {
	conn, _ := rfcServer(t)
	for _, tc := range []struct {
		name string
		pkt  []byte
		code uint16
		msg  string
	}{
		{"missing file", rrq("missing"), codeNotFound, "file not found"},
		{"directory", rrq("warewulf"), codeNotFound, "not a regular file"},
		{"traversal", rrq("../etc/passwd"), codeAccessViolation, "unsafe path"},
		{"backslash", rrq("..\\x"), codeAccessViolation, "unsafe path"},
		{"mode mail", rawRRQ("f", "mail"), codeIllegalOp, "transfer mode"},
		{"NUL smuggled into the name", []byte("\x00\x01f\x00../x\x00octet\x00"), codeIllegalOp, "transfer mode"},
		{"write request", append([]byte{0, 2}, "up\x00octet\x00"...), codeAccessViolation, "read-only"},
		{"write request with options", append([]byte{0, 2}, "up\x00octet\x00blksize\x001024\x00tsize\x005\x00"...), codeAccessViolation, "read-only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newRawClient(t)
			c.send(conn.LocalAddr(), tc.pkt)
			op, body := c.recv()
			require.Equal(t, uint16(5), op, "want ERROR, got %q", body)
			assert.Equal(t, tc.code, binary.BigEndian.Uint16(body), "error code")
			assert.Contains(t, string(body[2:]), tc.msg)
			assert.Equal(t, byte(0), body[len(body)-1], "message ends with NUL")
			assert.NotEqual(t, conn.LocalAddr().(*net.UDPAddr).Port, c.peer.Port, "errors come from a new transfer ID")
			// Nothing more follows the error.
			require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(300*time.Millisecond)))
			_, _, err := c.conn.ReadFromUDP(make([]byte, 600))
			assert.Error(t, err, "a second packet followed the error")
		})
	}
}

// TestPinInternals: the pin/tftp fields negotiate and sendError reach are
// where they expect; after a pin/tftp upgrade that moves them this fails
// (the server would fall back to pin/tftp's own answers).
func TestPinInternals(t *testing.T) {
	got := make(chan []bool, 1)
	conn, err := ListenPacket(t.Context(), "udp4", "127.0.0.1:0")
	require.NoError(t, err)
	ps := ptftp.NewServer(func(_ string, rf io.ReaderFrom) error {
		got <- []bool{negotiate(rf), sendError(rf, errNotFound)}
		return errNotFound
	}, nil)
	go func() { _ = ps.Serve(conn) }()
	t.Cleanup(ps.Shutdown)
	c := newRawClient(t)
	c.send(conn.LocalAddr(), rrq("f", "blksize", "1024"))
	op, body := c.recv()
	require.Equal(t, uint16(5), op)
	assert.Equal(t, uint16(codeNotFound), binary.BigEndian.Uint16(body))
	assert.Equal(t, []bool{true, true}, <-got)
}

// TestLeadingSlashClients: real clients fetch the names Warewulf hands out.
func TestLeadingSlashClients(t *testing.T) {
	l := newLab(t)
	require.NoError(t, os.MkdirAll(filepath.Join(l.dir, "warewulf"), 0o755))
	want := l.writeRandom(t, "warewulf/ipxe-snponly-x86_64.efi", 300_000)
	l.serve(t, &Server{}, srvPrefix.Addr().String()+":69")
	srv := srvPrefix.Addr().String()

	for _, tc := range []struct {
		tool string
		args func(out string) []string
	}{
		{"atftp", func(out string) []string {
			return []string{"--option", "blksize 1428", "--option", "tsize", "-g", "-r", "/warewulf/ipxe-snponly-x86_64.efi", "-l", out, srv, "69"}
		}},
		{"atftp", func(out string) []string {
			return []string{"-g", "-r", "//warewulf/ipxe-snponly-x86_64.efi", "-l", out, srv, "69"}
		}},
		{"busybox", func(out string) []string {
			return []string{"tftp", "-b", "1428", "-g", "-r", "/warewulf/ipxe-snponly-x86_64.efi", "-l", out, srv}
		}},
		{"curl", func(out string) []string {
			return []string{"-sS", "--path-as-is", "-o", out, "tftp://" + srv + "//warewulf/ipxe-snponly-x86_64.efi"}
		}},
	} {
		if _, err := exec.LookPath(tc.tool); err != nil {
			t.Logf("%s not installed: skipped", tc.tool)
			continue
		}
		out := filepath.Join(t.TempDir(), "out")
		text, err := l.run(t, time.Minute, tc.tool, tc.args(out)...)
		require.NoError(t, err, "%s %s\n%s", tc.tool, strings.Join(tc.args(out), " "), text)
		assert.Equal(t, want, fileSHA(t, out), tc.tool)
	}
	assert.NotContains(t, l.log.String(), "refused")
}
