package tftp

import (
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"
	"unicode/utf8"
)

// ErrUnsafePath is wrapped by every error CleanPath returns: the requested
// name is absolute, climbs out of the served tree, or carries bytes no file
// name served over TFTP should have. Callers branch on it with errors.Is.
var ErrUnsafePath = errors.New("unsafe TFTP path")

// MaxPathLen bounds the length of a requested file name. A TFTP request fits
// in one 512-byte block, so nothing legitimate comes near it.
const MaxPathLen = 512

// CleanPath validates a file name taken from a TFTP read request and returns
// it as an [fs.ValidPath] name relative to the served tree.
//
// It refuses (with an error wrapping [ErrUnsafePath]) empty names, absolute
// names ("/etc/passwd", "\\x", "C:x"), any ".." element, NUL and other control
// bytes, backslashes, invalid UTF-8 and names longer than [MaxPathLen].
// Redundant "." elements and repeated slashes are cleaned away. The check is
// purely lexical: the [fs.FS] that opens the result must itself keep
// symbolic links inside the tree (os.Root does; os.DirFS does not).
func CleanPath(name string) (string, error) {
	bad := func(why string) (string, error) {
		return "", fmt.Errorf("%w %q: %s", ErrUnsafePath, name, why)
	}
	switch {
	case name == "":
		return bad("empty name")
	case len(name) > MaxPathLen:
		return bad(fmt.Sprintf("longer than %d bytes", MaxPathLen))
	case !utf8.ValidString(name):
		return bad("not valid UTF-8")
	case strings.HasPrefix(name, "/"):
		return bad("absolute path")
	case strings.ContainsRune(name, '\\'):
		return bad("backslash in name")
	case len(name) >= 2 && name[1] == ':':
		return bad("drive-letter path")
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			if r == 0 {
				return bad("NUL byte in name")
			}
			return bad("control character in name")
		}
	}
	for _, elem := range strings.Split(name, "/") {
		if elem == ".." {
			return bad("'..' element")
		}
	}
	clean := path.Clean(name)
	if clean == "." || !fs.ValidPath(clean) {
		return bad("not a file name")
	}
	return clean, nil
}
