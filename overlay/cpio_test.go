package overlay

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/wwboot/wwboot/image"
)

// TestBuiltinOverlayTimes: every record of a node's system and runtime
// archives, rendered from the built-in overlays (embed.FS keeps no times),
// carries BuiltinTime, as u-root's reader and GNU cpio -itv read it, and
// never the wrapped zero time (2042-07-14) the nodes used to show.
func TestBuiltinOverlayTimes(t *testing.T) {
	want := BuiltinTime()
	require.Greater(t, want.Unix(), int64(0))
	db := testDB(t, goldenConfig())
	r := newTestRenderer(t, func(o *Options) { o.Server = goldenServer(t) })
	n, _ := db.Node("n00001")
	for _, k := range []Kind{System, Runtime} {
		a, err := r.Render(context.Background(), db, n, k)
		require.NoError(t, err)
		zr, err := gzip.NewReader(a.NewReader())
		require.NoError(t, err)
		raw, err := io.ReadAll(zr)
		require.NoError(t, err)

		rr := cpio.Newc.Reader(bytes.NewReader(raw))
		files := 0
		for {
			rec, err := rr.ReadRecord()
			if err == io.EOF {
				break
			}
			require.NoError(t, err)
			if rec.Mode&cpio.S_IFMT == cpio.S_IFDIR {
				// Parents the packer adds have no source file: 1970.
				assert.Contains(t, []uint64{0, uint64(want.Unix())}, rec.MTime, "%s %s", k, rec.Name)
				continue
			}
			files++
			assert.Equal(t, uint64(want.Unix()), rec.MTime, "%s %s", k, rec.Name)
		}
		require.NotZero(t, files, "%s archive holds no files", k)

		if _, err := exec.LookPath("cpio"); err != nil {
			t.Skip("GNU cpio is not installed")
		}
		cmd := exec.Command("cpio", "-itv", "--quiet")
		cmd.Stdin = bytes.NewReader(raw)
		cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			assert.NotContains(t, l, "2042", "wrapped time: %s", l)
			if !strings.HasPrefix(l, "d") {
				assert.Contains(t, l, want.Format("Jan _2"), "%s", l)
			}
		}
	}
}

func TestBuiltinTimeIsFixed(t *testing.T) {
	// go test binaries carry no vcs stamp: the documented fallback.
	assert.Equal(t, time.Unix(BuiltinEpoch, 0).UTC(), BuiltinTime())
	assert.Equal(t, BuiltinTime(), BuiltinTime())
}

// TestAppendNewcChecksFields: the overlay packer shares image's encoder, so
// an owner a newc header cannot hold is an error naming the file, and any
// time is written by the image.NewcSeconds rule.
func TestAppendNewcChecksFields(t *testing.T) {
	_, err := appendNewc(nil, &record{path: "etc/x", mode: sIFREG | 0o644, uid: -1})
	require.ErrorIs(t, err, image.ErrHeaderField)
	assert.Contains(t, err.Error(), "/etc/x: uid")
	_, err = appendNewc(nil, &record{path: "etc/y", mode: sIFREG | 0o644, gid: 1 << 40})
	require.ErrorIs(t, err, image.ErrHeaderField)

	var b []byte
	for _, rec := range []*record{
		{path: "zero", mode: sIFREG | 0o644, mtime: time.Time{}.Unix(), data: []byte("z")},
		{path: "late", mode: sIFREG | 0o644, mtime: 1 << 40},
	} {
		b, err = appendNewc(b, rec)
		require.NoError(t, err)
	}
	b = appendTrailer(b)
	rr := cpio.Newc.Reader(bytes.NewReader(b))
	got := map[string]uint64{}
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		got[rec.Name] = rec.MTime
	}
	assert.Equal(t, map[string]uint64{"zero": 0, "late": 1<<32 - 1}, got)
}
