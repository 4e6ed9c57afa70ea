package overlay

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSystemdEscapeMatchesSystemd compares with the real systemd-escape.
func TestSystemdEscapeMatchesSystemd(t *testing.T) {
	tool, err := exec.LookPath("systemd-escape")
	if err != nil {
		t.Skip("systemd-escape not installed")
	}
	for _, s := range []string{"my-dev/eth0.100 x", ".hidden", "a..b", "ä", "tab\there", "x:y_z", "back\\slash", "-lead", "a/b/"} {
		out, err := exec.Command(tool, "--", s).Output()
		require.NoError(t, err, s)
		assert.Equal(t, strings.TrimSuffix(string(out), "\n"), SystemdEscape(s), "SystemdEscape(%q)", s)
	}
	for _, p := range []string{"/srv/my data/", "/home/users", "/", "//a//b/", "/a.b/.c", "/mnt/ä"} {
		out, err := exec.Command(tool, "--path", "--", p).Output()
		require.NoError(t, err, p)
		assert.Equal(t, strings.TrimSuffix(string(out), "\n"), SystemdEscapePath(p), "SystemdEscapePath(%q)", p)
	}
}

// TestUniqueField: the first line wins per field value, order is kept,
// short lines stay.
func TestUniqueField(t *testing.T) {
	in := "root:x:0\nbob:x:1\nroot:y:0\nshort\nbob:z\n"
	assert.Equal(t, "root:x:0\nbob:x:1\nshort\n", UniqueField(":", 0, in))
	assert.Equal(t, "root:x:0\nbob:x:1\nshort\nbob:z\n", UniqueField(":", 2, in))
}
