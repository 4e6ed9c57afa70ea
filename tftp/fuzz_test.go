package tftp

import (
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
)

// fuzzFiles is the tree FuzzServer serves.
var fuzzFiles = fstest.MapFS{
	"undionly.kpxe":    {Data: bytes.Repeat([]byte("k"), 2000)},
	"ipxe/boot.ipxe":   {Data: []byte("#!ipxe\n")},
	"empty":            {Data: nil},
	"dir/sub/deep.bin": {Data: []byte("deep")},
}

// wantsData reports whether the server may answer pkt with data: it is a
// read request, as pin/tftp reads it (the first 516 bytes), for an existing
// file under a safe name, in a valid mode.
func wantsData(pkt []byte) bool {
	if len(pkt) > 516 {
		pkt = pkt[:516]
	}
	if len(pkt) < 4 || binary.BigEndian.Uint16(pkt) != 1 {
		return false
	}
	parts := bytes.Split(pkt[2:], []byte{0})
	if len(parts) < 2 {
		return false
	}
	if m := strings.ToLower(string(parts[1])); m != "octet" && m != "netascii" {
		return false
	}
	name, err := CleanPath(string(parts[0]))
	if err != nil {
		return false
	}
	f, ok := fuzzFiles[name]
	return ok && f.Mode.IsRegular()
}

// checkOACK: an OACK acknowledges only options the request asked for
// (names case-insensitive, RFC 2347) and understood, each once: blksize
// within 8..65464 and no more than asked (RFC 2348), tsize as the file's
// size (RFC 2349).
func checkOACK(t *testing.T, req, oack []byte) {
	t.Helper()
	if len(req) > 516 {
		req = req[:516]
	}
	parts := bytes.Split(req[2:], []byte{0})
	asked := map[string]string{}
	for i := 2; i+1 < len(parts); i += 2 {
		asked[strings.ToLower(string(parts[i]))] = string(parts[i+1])
	}
	name, _ := CleanPath(string(parts[0]))
	got := bytes.Split(bytes.TrimSuffix(oack, []byte{0}), []byte{0})
	require.Equal(t, 0, len(got)%2, "OACK %q", oack)
	seen := map[string]bool{}
	for i := 0; i+1 < len(got); i += 2 {
		k, v := string(got[i]), string(got[i+1])
		require.False(t, seen[k], "%s twice in OACK %q", k, oack)
		seen[k] = true
		_, ok := asked[k]
		require.True(t, ok, "OACK %q acknowledges %s, not asked in %q", oack, k, req)
		n, err := strconv.ParseInt(v, 10, 64)
		require.NoError(t, err, "OACK %q", oack)
		switch k {
		case "blksize":
			want, _ := strconv.ParseInt(asked[k], 10, 64)
			require.True(t, n >= 8 && n <= 65464 && n <= want, "blksize %d for %q", n, asked[k])
		case "tsize":
			require.Equal(t, int64(len(fuzzFiles[name].Data)), n, "tsize")
		default:
			t.Fatalf("OACK %q acknowledges unknown option %s", oack, k)
		}
	}
}

// FuzzServer sends arbitrary datagrams to a live server on loopback. The
// server must not panic, must never answer anything but a request, and must
// send data (DATA or OACK) only for a valid read request of a file it has;
// everything else gets an ERROR packet or silence.
func FuzzServer(f *testing.F) {
	for _, seed := range [][]byte{
		[]byte("\x00\x01undionly.kpxe\x00octet\x00"),
		[]byte("\x00\x01undionly.kpxe\x00octet\x00blksize\x001468\x00tsize\x000\x00"),
		[]byte("\x00\x01ipxe/boot.ipxe\x00NETASCII\x00"),
		[]byte("\x00\x01../etc/passwd\x00octet\x00"),
		[]byte("\x00\x01/etc/passwd\x00octet\x00"),
		[]byte("\x00\x01undionly.kpxe\x00../../etc/passwd\x00octet\x00"),
		[]byte("\x00\x01undionly.kpxe"),
		[]byte("\x00\x01\x00\x00"),
		[]byte("\x00\x02upload\x00octet\x00"),
		[]byte("\x00\x03\x00\x01data"),
		[]byte("\x00\x04\x00\x01"),
		[]byte("\x00\x05\x00\x01oops\x00"),
		[]byte("\x00\x06blksize\x00512\x00"),
		[]byte("\x00\x01/undionly.kpxe\x00octet\x00BLKSIZE\x00100000\x00TSize\x000\x00timeout\x003\x00x\x00y\x00"),
		[]byte("\x00\x01//ipxe/boot.ipxe\x00octet\x00blksize\x008\x00tsize\x00abc\x00"),
		[]byte("\xff\xff"),
		[]byte("\x00"),
		{},
	} {
		f.Add(seed)
	}

	srv := &Server{FS: fuzzFiles, Timeout: 20 * time.Millisecond, Retries: 1}
	conn, err := ListenPacket(context.Background(), "udp4", "127.0.0.1:0")
	require.NoError(f, err)
	addr := conn.LocalAddr().(*net.UDPAddr)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	f.Cleanup(func() {
		cancel()
		<-done
	})

	f.Fuzz(func(t *testing.T, pkt []byte) {
		if len(pkt) > 1400 {
			pkt = pkt[:1400]
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		require.NoError(t, err)
		defer c.Close()
		_, err = c.WriteToUDP(pkt, addr)
		require.NoError(t, err)
		isRequest := len(pkt) >= 2 && (binary.BigEndian.Uint16(pkt) == 1 || binary.BigEndian.Uint16(pkt) == 2)
		// A request with a NUL after the opcode (name and mode present)
		// must be answered (pin/tftp drops requests under 4 bytes).
		mustAnswer := isRequest && len(pkt) >= 4 && bytes.IndexByte(pkt[2:min(len(pkt), 516)], 0) >= 0
		wait := 30 * time.Millisecond
		if mustAnswer {
			wait = 2 * time.Second
		}
		require.NoError(t, c.SetReadDeadline(time.Now().Add(wait)))
		buf := make([]byte, 65536)
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			var ne net.Error
			require.ErrorAs(t, err, &ne)
			require.True(t, ne.Timeout(), "%v", err)
			// Silence is right for anything but a well-formed request.
			if mustAnswer {
				t.Fatalf("no answer to request %q", pkt)
			}
			return
		}
		require.True(t, isRequest, "answered non-request %q with %q", pkt, buf[:n])
		require.GreaterOrEqual(t, n, 4, "short reply %q", buf[:n])
		switch op := binary.BigEndian.Uint16(buf); op {
		case 5: // ERROR: an RFC 1350/2347 code
			require.LessOrEqual(t, binary.BigEndian.Uint16(buf[2:]), uint16(8), "error code in %q", buf[:n])
			if binary.BigEndian.Uint16(pkt) == 2 {
				require.Equal(t, uint16(codeAccessViolation), binary.BigEndian.Uint16(buf[2:]), "a write is an access violation")
			}
		case 3, 6: // DATA, OACK
			require.True(t, wantsData(pkt), "sent data (opcode %d) for %q", op, pkt)
			if op == 6 {
				checkOACK(t, pkt, buf[2:n])
			}
		default:
			t.Fatalf("reply with opcode %d to %q", op, pkt)
		}
	})
}
