// Package names holds the one rule for the names of images, overlays, nodes
// and profiles, so that every command accepts the same names.
//
// The rule is Warewulf's image name rule (internal/pkg/image/util.go,
// ValidName: the regular expression ^[\w\-\.\:]+$, that is ASCII letters,
// digits, '_', '-', '.' and ':'), which Warewulf's overlay names follow too.
// wwboot applies it to node and profile names as well, with two
// restrictions where Warewulf's expression lets through names that break
// things: a name may not start with '.' (".", ".." and hidden directories
// would be paths, not names) nor with '-' (it would read as a flag on the
// command line). Names are at most 255 bytes, a file name's limit.
package names

import "fmt"

// MaxLen is the longest name, in bytes.
const MaxLen = 255

// Valid reports whether s is a valid name (see the package comment).
func Valid(s string) bool {
	if s == "" || len(s) > MaxLen || s[0] == '.' || s[0] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '_', c == '-', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

// Check returns nil for a valid name, else an error naming the kind
// ("image", "overlay", "node", "profile"), the name and the rule.
func Check(kind, s string) error {
	if Valid(s) {
		return nil
	}
	return fmt.Errorf("%s name %q: use ASCII letters, digits, '_', '-', '.' and ':' (Warewulf's rule), "+
		"not starting with '.' or '-', at most %d bytes", kind, s, MaxLen)
}
