package hostlist

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Expected values below were printed by scontrol show hostnames and
// scontrol show hostlist of Debian's Slurm 22.05.
func TestExpandAndString(t *testing.T) {
	for _, tc := range []struct {
		expr   string
		hosts  string // space separated
		ranged string
	}{
		{"n[001-004,010]", "n001 n002 n003 n004 n010", "n[001-004,010]"},
		{"a[1-3]b[01-02]", "a1b01 a1b02 a2b01 a2b02 a3b01 a3b02", "a1b[01-02],a2b[01-02],a3b[01-02]"},
		{"a[1-2]b[3-4]c[5-6]", "a1b3c5 a1b3c6 a2b3c5 a2b3c6 a1b4c5 a1b4c6 a2b4c5 a2b4c6", "a1b3c[5-6],a2b3c[5-6],a1b4c[5-6],a2b4c[5-6]"},
		{"n[9-11]", "n9 n10 n11", "n[9-11]"},
		{"n[09-11]", "n09 n10 n11", "n[09-11]"},
		{"n[098-101]", "n098 n099 n100 n101", "n[098-101]"},
		{"x,y[1-2],z", "x y1 y2 z", "x,y[1-2],z"},
		{"n[1-3],m[5-6]", "n1 n2 n3 m5 m6", "n[1-3],m[5-6]"},
		{"n1,n2,n3,n05,n06", "n1 n2 n3 n05 n06", "n[1-3,05-06]"},
		{"n01,n1,n001", "n01 n1 n001", "n[01,1,001]"},
		{"a1b1,a1b2,a2b1", "a1b1 a1b2 a2b1", "a1b[1-2],a2b1"},
		{"n[1,1,2]", "n1 n1 n2", "n[1,1-2]"},
		{"n3,n2,n1", "n3 n2 n1", "n[3,2,1]"},
		{"n1,m1,n2", "n1 m1 n2", "n1,m1,n2"},
		{"rack1-n[1-3]", "rack1-n1 rack1-n2 rack1-n3", "rack1-n[1-3]"},
		{"n[0-1]-[2-3]", "n0-2 n0-3 n1-2 n1-3", "n0-[2-3],n1-[2-3]"},
		{"n1-ib,n2-ib", "n1-ib n2-ib", "n1-ib,n2-ib"},
		{"n[8-10],n[011-012]", "n8 n9 n10 n011 n012", "n[8-10,011-012]"},
		{"n9,n10,n011", "n9 n10 n011", "n[9-10,011]"},
		{"n[1-2],n[3-4]", "n1 n2 n3 n4", "n[1-4]"},
		{"[1-3]", "1 2 3", "[1-3]"},
		{"1,2,3", "1 2 3", "[1-3]"},
		{"123,124,0125", "123 124 0125", "[123-124,0125]"},
		{"n1,n", "n1 n", "n1,n"},
		{"n,n", "n n", "n,n"},
		{"n[01-3]", "n01 n02 n03", "n[01-03]"},
		{"n[1-03]", "n1 n2 n3", "n[1-3]"},
		{"n[1-2],,n3", "n1 n2 n3", "n[1-3]"},
		{" n1 ,n2", "n1 n2", "n[1-2]"},
		{"n1\tn2 n3", "n1 n2 n3", "n[1-3]"},
		{"n[1-2]n[3]", "n1n3 n2n3", "n1n3,n2n3"},
		{"n[2-2]", "n2", "n2"},
		{"n099,n100,n101", "n099 n100 n101", "n[099-101]"},
		{"n99,n100,n0101", "n99 n100 n0101", "n[99-100,0101]"},
		{"n10,n09", "n10 n09", "n[10,09]"},
		{"", "", ""},
		{",", "", ""},
	} {
		t.Run(tc.expr, func(t *testing.T) {
			l, err := Parse(tc.expr)
			require.NoError(t, err)
			want := strings.Fields(tc.hosts)
			if want == nil {
				want = []string{}
			}
			assert.Equal(t, want, l.Hosts())
			assert.Equal(t, len(want), l.Len())
			assert.Equal(t, tc.ranged, l.String())
			assert.Equal(t, tc.ranged, Compress(want), "compressing the expanded names")
		})
	}
}

func TestParseErrors(t *testing.T) {
	for _, expr := range []string{
		"n[3-1]", "n[1-2", "n[1-2]-ib", "n[1-2]x[3-4]y", "n[1-2]]", "n[]", "n[,1]", "n[1,]",
		"n[-1]", "n[1--2]", "n[1-]", "n[a-b]", "n[0x1-2]", "n[+1-2]", "n[ 1-2]", "n[1-65537]", "n]1",
		"n[1-2][", "a[1[2]]", "n[18446744073709551616]", "a[0-65535]b[0-65535]",
	} {
		t.Run(expr, func(t *testing.T) {
			_, err := Parse(expr)
			require.Error(t, err)
			assert.True(t, errors.Is(err, ErrSyntax))
			assert.Contains(t, err.Error(), expr)
		})
	}
}

func TestMaxRangeAccepted(t *testing.T) {
	l, err := Parse("n[1-65536]")
	require.NoError(t, err)
	assert.Equal(t, 65536, l.Len())
	assert.Equal(t, "n[1-65536]", l.String())
}

func TestLongDigitSuffixKeptAsWritten(t *testing.T) {
	l, err := Parse("n18446744073709551616,n1")
	require.NoError(t, err)
	assert.Equal(t, []string{"n18446744073709551616", "n1"}, l.Hosts())
	assert.Equal(t, "n18446744073709551616,n1", l.String())
}

func TestPushBuildsRanges(t *testing.T) {
	var l List
	for _, n := range []string{"c7", "c8", "c9", "c10", "gpu1", "gpu2", "login"} {
		l.Push(n)
	}
	assert.Equal(t, "c[7-10],gpu[1-2],login", l.String())
	assert.Equal(t, 7, l.Len())
}

// FuzzParse: Parse never panics; whatever it accepts has a ranged form, and
// a compressed form of its names, that both parse back to the same names.
// (The two forms may differ, as in Slurm: "A 0[0-0] 0" prints as A,00,0
// while the names A,00,0 compress to A,[00,0].)
func FuzzParse(f *testing.F) {
	for _, s := range []string{"n[001-004,010]", "a[1-3]b[01-02]", "x,y[1-2] z", "n[8-10],n[011-012]", "n[1-2", "n1,n01,n001", "[1-3]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		l, err := Parse(expr)
		if err != nil {
			require.ErrorIs(t, err, ErrSyntax)
			return
		}
		hosts := l.Hosts()
		require.Equal(t, l.Len(), len(hosts))
		for _, s := range []string{l.String(), Compress(hosts)} {
			again, err := Expand(s)
			require.NoError(t, err, "ranged form %q of %q must parse", s, expr)
			require.Equal(t, hosts, again, "ranged form %q of %q", s, expr)
		}
	})
}
