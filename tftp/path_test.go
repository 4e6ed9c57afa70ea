package tftp

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCleanPath(t *testing.T) {
	for _, tc := range []struct {
		in, want string // want "" means refused
	}{
		{"undionly.kpxe", "undionly.kpxe"},
		{"ipxe/snponly.efi", "ipxe/snponly.efi"},
		{"./a//b/./c", "a/b/c"},
		{"a/", "a"},
		{"...", "..."},
		{"a..b", "a..b"},
		{"", ""},
		{".", ""},
		{"./", ""},
		{"..", ""},
		{"../etc/passwd", ""},
		{"a/../../etc/passwd", ""},
		{"a/..", ""},
		{"/etc/passwd", "etc/passwd"}, // the served tree's etc/passwd, as tftp-hpa -s
		{"//etc/passwd", "etc/passwd"},
		{"/warewulf/ipxe-snponly-x86_64.efi", "warewulf/ipxe-snponly-x86_64.efi"},
		{"/", ""},
		{"///", ""},
		{"/..", ""},
		{"/../etc/passwd", ""},
		{"/C:x", ""},
		{"\\etc\\passwd", ""},
		{"..\\..\\etc\\passwd", ""},
		{"C:x", ""},
		{"a\x00b", ""},
		{"a\nb", ""},
		{"a\x7fb", ""},
		{"\xff\xfe", ""},
		{strings.Repeat("a", MaxPathLen+1), ""},
	} {
		got, err := CleanPath(tc.in)
		if tc.want == "" {
			assert.ErrorIs(t, err, ErrUnsafePath, "%q", tc.in)
			assert.Empty(t, got, "%q", tc.in)
			continue
		}
		if assert.NoError(t, err, "%q", tc.in) {
			assert.Equal(t, tc.want, got, "%q", tc.in)
		}
	}
}

// FuzzCleanPath: whatever goes in, what comes out is a valid relative name
// that cannot climb out of the tree.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"undionly.kpxe", "../etc/passwd", "/etc/passwd", "a\x00b", "a/./b//c", "..\\x", "C:\\x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		got, err := CleanPath(name)
		if err != nil {
			require.ErrorIs(t, err, ErrUnsafePath)
			require.Empty(t, got)
			return
		}
		require.True(t, fs.ValidPath(got), "%q -> %q", name, got)
		require.NotEqual(t, ".", got)
		for _, elem := range strings.Split(got, "/") {
			require.NotEqual(t, "..", elem)
		}
		require.NotContains(t, got, "\x00")
		require.NotContains(t, got, "\\")
		require.NotContains(t, name, "\x00")
		require.False(t, strings.HasPrefix(got, "/"))
	})
}
