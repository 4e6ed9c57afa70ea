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
// Leading slashes name the root of the served tree, as they do for tftp-hpa
// run with -s (it chroots to its directory) and for dnsmasq's tftp-root:
// "/warewulf/ipxe-snponly-x86_64.efi" and "//x" are served as
// "warewulf/ipxe-snponly-x86_64.efi" and "x". Warewulf's own DHCP templates
// hand out boot file names of that form.
//
// It refuses (with an error wrapping [ErrUnsafePath]) empty names (also "/"),
// any ".." element, NUL and other control bytes, backslashes ("\\x"),
// drive letters ("C:x"), invalid UTF-8 and names longer than [MaxPathLen].
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
	case strings.ContainsRune(name, '\\'):
		return bad("backslash in name")
	}
	rel := strings.TrimLeft(name, "/")
	switch {
	case rel == "":
		return bad("names the root, not a file")
	case len(rel) >= 2 && rel[1] == ':':
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
	clean := path.Clean(rel)
	if clean == "." || !fs.ValidPath(clean) {
		return bad("not a file name")
	}
	return clean, nil
}
