package nodedb

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the nodes.conf loader: it must never
// panic, and whatever it accepts must build, save and load back equal.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"full.conf"} {
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("nodes: {}\nnodeprofiles: {}\n"))
	f.Add([]byte("nodes:\n  n1:\n    kernel:\n      args: quiet splash\n"))
	f.Add([]byte("nodes:\n  a: &x\n    comment: hi\n  b: *x\n"))
	f.Add([]byte("nodes:\n  n1:\n    profiles: [p]\nnodeprofiles:\n  p:\n    profiles: [p]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse("fuzz.conf", data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "fuzz.conf") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		db, err := New(cfg)
		if err != nil {
			return
		}
		out, err := encodeDoc(encodeConfig(db.Config()))
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse("again.conf", out)
		if err != nil {
			t.Fatalf("saved inventory does not load: %v\n%s", err, out)
		}
		if _, err := New(again); err != nil {
			t.Fatalf("saved inventory does not validate: %v", err)
		}
		_ = context.Background()
	})
}

// FuzzParseHW checks the MAC parser: no panic, and what parses normalizes to
// a form that parses to the same address.
func FuzzParseHW(f *testing.F) {
	for _, s := range []string{"aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aabb.ccdd.eeff", "aabbccddeeff", "zz", "", "80:00:00:48:fe:80:00:00:00:00:00:00:00:02:c9:03:00:0a:bc:01"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		hw, err := ParseHW(s)
		if err != nil {
			return
		}
		again, err := ParseHW(hw.String())
		if err != nil || again.String() != hw.String() {
			t.Fatalf("%q -> %s does not round-trip: %v", s, hw, err)
		}
	})
}

// FuzzParseIP checks the address and netmask parsers: no panic, and what
// parses prints back to something that parses to the same value.
func FuzzParseIP(f *testing.F) {
	for _, s := range []string{"10.0.0.1", "10.0.0.1/24", "255.255.255.0", "fd00::1", "fd00::1/64", "::ffff:10.0.0.1", "1.2.3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if p, err := ParseIPv4(s); err == nil {
			if !p.Addr().Is4() {
				t.Fatalf("%q parsed as IPv4 but is %s", s, p)
			}
		}
		if p, err := ParseIPv6(s); err == nil {
			if !p.Addr().Is6() || p.Addr().Is4In6() {
				t.Fatalf("%q parsed as IPv6 but is %s", s, p)
			}
		}
		if bits, err := ParseNetmask(s); err == nil && (bits < 0 || bits > 32) {
			t.Fatalf("%q: prefix %d", s, bits)
		}
	})
}

// FuzzFastParse holds the fast parser to yaml.v3: whatever the fast path
// accepts, the full parser must accept and decode to the same inventory.
func FuzzFastParse(f *testing.F) {
	data, err := os.ReadFile(filepath.Join("testdata", "full.conf"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	f.Add(genConfig(3))
	f.Add([]byte("nodes:\n  n1:\n    comment: 'it''s'\n    tags:\n      a: \"b c\"\n      1: 2\n    kernel:\n      args: quiet  splash\n"))
	f.Add([]byte("nodes:\n  n1:\n    profiles:\n    - a\n    - b\n    comment: x # note\n"))
	f.Add([]byte("WW_INTERNAL: 45\nnodeprofiles: {}\nnodes:\n  n1: {}\n  n2:\n  n3:\n    comment: ~\n"))
	f.Add([]byte("nodes:\n  n1:\n    tags:\n      a:\n      b: ~\n      c: 'x y'\n    network devices:\n      d:\n        tags:\n          k: v\n"))
	f.Add([]byte("nodes:\n  n1:\n    tags:\n      a: 1\n      a: 2\n"))
	f.Add([]byte("nodes:\n  n1:\n    future: 1\n    network devices:\n      e:\n        primary: \"true\"\n"))
	f.Add([]byte("nodes:\n  n1:\n    filesystems:\n      /dev/a:\n        mount_options: defaults,noatime\n  n2:\n    filesystems:\n      /dev/a:\n        mount_options:\n          - defaults\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ok := fastParse(string(data))
		if !ok {
			return
		}
		slow, _, _, err := parse("slow", data)
		if err != nil {
			t.Fatalf("fast path accepted what yaml.v3 refuses (%v):\n%s", err, data)
		}
		if !reflect.DeepEqual(normalizeEmpty(fast), normalizeEmpty(slow)) {
			t.Fatalf("fast and full parsers disagree on\n%s\nfast: %#v\nslow: %#v", data, fast, slow)
		}
	})
}

// normalizeEmpty makes empty and nil maps and slices compare equal.
func normalizeEmpty(c *Config) *Config {
	out := cloneConfig(c)
	return out
}
