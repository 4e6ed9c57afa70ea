package hostlist

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// scontrol runs Debian's real `scontrol show WHAT ARG` with a minimal
// slurm.conf (scontrol reads one even for hostlists) and returns its output
// lines. The test is skipped without scontrol, and fails under CI.
type scontrol struct {
	t    *testing.T
	conf string
}

func newScontrol(t *testing.T) *scontrol {
	t.Helper()
	if _, err := exec.LookPath("scontrol"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("scontrol not installed: .ci/run installs slurm-client from .ci/packages")
		}
		t.Skip("scontrol not installed (apt-get install slurm-client)")
	}
	conf := filepath.Join(t.TempDir(), "slurm.conf")
	require.NoError(t, os.WriteFile(conf, []byte("ClusterName=hl\nSlurmctldHost=localhost\n"), 0o644))
	return &scontrol{t: t, conf: conf}
}

func (s *scontrol) show(what, arg string) []string {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "scontrol", "show", what, arg)
	cmd.Env = append(os.Environ(), "SLURM_CONF="+s.conf)
	out, err := cmd.CombinedOutput()
	require.NoError(s.t, err, "scontrol show %s %q: %s", what, arg, out)
	return strings.Fields(string(out))
}

// randomExpr builds a well-formed hostlist expression: names, brackets with
// ranges and lists, padded and unpadded numbers, several brackets.
func randomExpr(r *rand.Rand) string {
	prefixes := []string{"n", "node", "a", "rack1-n", "c0", "gpu-", "x", ""}
	num := func() string {
		n := r.IntN(120)
		switch r.IntN(4) {
		case 0:
			return fmt.Sprintf("%03d", n)
		case 1:
			return fmt.Sprintf("%02d", n)
		}
		return fmt.Sprint(n)
	}
	bracket := func() string {
		var items []string
		for range 1 + r.IntN(3) {
			lo := num()
			if r.IntN(2) == 0 {
				v, _ := strconv.Atoi(lo)
				items = append(items, fmt.Sprintf("%s-%0*d", lo, len(lo)*r.IntN(2), v+r.IntN(12)))
			} else {
				items = append(items, lo)
			}
		}
		return "[" + strings.Join(items, ",") + "]"
	}
	var parts []string
	for range 1 + r.IntN(4) {
		p := prefixes[r.IntN(len(prefixes))]
		switch r.IntN(4) {
		case 0:
			parts = append(parts, p+num())
		case 1:
			parts = append(parts, p+bracket())
		case 2:
			parts = append(parts, p+bracket()+"b"+bracket())
		default:
			if p == "" {
				p = "login"
			}
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ",")
}

// TestAgainstScontrol compares Expand, List.String and Compress with what
// Slurm's scontrol prints for the same input.
func TestAgainstScontrol(t *testing.T) {
	sc := newScontrol(t)
	r := rand.New(rand.NewPCG(12, 2026))
	n := 300
	if testing.Short() {
		n = 20
	}
	for i := range n {
		expr := randomExpr(r)
		if i < 3 {
			expr = []string{"n[001-004,010]", "a[1-3]b[01-02]", "n[8-10],n[011-012],n9,n10,n011"}[i]
		}
		hosts, err := Expand(expr)
		require.NoError(t, err, expr)
		require.Equal(t, sc.show("hostnames", expr), hosts, "hostnames of %q", expr)
		l, _ := Parse(expr)
		require.Equal(t, sc.show("hostlist", expr), []string{l.String()}, "hostlist of %q", expr)
		joined := strings.Join(hosts, ",")
		require.Equal(t, sc.show("hostlist", joined), []string{Compress(hosts)}, "hostlist of the names %q", joined)
	}
}
