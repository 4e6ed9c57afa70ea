package names

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Warewulf's ValidName (internal/pkg/image/util.go) accepts these.
func TestValidWarewulfNames(t *testing.T) {
	for _, s := range []string{"rocky8:8.x", "rocky-9.4", "n0001", "gpu_nodes", "a", "Debian12", "x:y:z", "ubuntu_24.04"} {
		assert.True(t, Valid(s), s)
		assert.NoError(t, Check("image", s), s)
	}
}

func TestInvalidNames(t *testing.T) {
	for _, s := range []string{"", ".", "..", ".hidden", "-flag", "a/b", "a b", "a+b", "a@b", "é", "a\x00b", "~p", strings.Repeat("a", MaxLen+1)} {
		assert.False(t, Valid(s), "%q", s)
	}
	err := Check("overlay", "a/b")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `overlay name "a/b"`)
	assert.Contains(t, err.Error(), "':'")
}

func FuzzValid(f *testing.F) {
	for _, s := range []string{"rocky8:8.x", "..", "a/b", "-x", "n1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !Valid(s) {
			return
		}
		// A valid name is always one path element and never a flag.
		assert.NotContains(t, s, "/")
		assert.NotEqual(t, "..", s)
		assert.False(t, strings.HasPrefix(s, "-"))
		assert.LessOrEqual(t, len(s), MaxLen)
	})
}
