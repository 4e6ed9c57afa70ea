package image

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// XattrManifest is where a build records the tree's security extended
// attributes, as a file of the image (slash path from the root). newc cpio
// carries no extended attributes, so without it a file capability set with
// `setcap cap_net_raw+ep /usr/bin/ping` would be lost on the node, silently
// (Warewulf has the same hole). The wwinit overlay's /init puts them back
// before it starts the image's init (/etc/wwboot/restore-xattrs).
//
// Format, one attribute a line, '#' lines are comments:
//
//	NAME 0xHEXVALUE TEXT /PATH
//
// TEXT is a security.capability value as setcap takes it
// ("cap_net_raw=ep"; clauses separated by ';' instead of spaces), or "-"
// when there is none (other attributes, and capabilities setcap cannot
// express). PATH is the rest of the line;
// paths with a newline are not recorded.
const XattrManifest = "etc/wwboot/xattrs"

// Xattr is one extended attribute of a file of a tree.
type Xattr struct {
	Path  string // slash path from the tree root, with a leading "/"
	Name  string // e.g. security.capability
	Value []byte
}

// keepXattr reports whether a build records the attribute: the security
// namespace (file capabilities, IMA/EVM signatures, SMACK labels), but not
// SELinux labels, which the node's policy assigns.
func keepXattr(name string) bool {
	return strings.HasPrefix(name, "security.") && name != "security.selinux"
}

// readXattrs returns the attributes keepXattr keeps of root/name (not
// following a symlink). A file system without extended attributes gives
// none.
func readXattrs(root, name string) ([]Xattr, error) {
	p := filepath.Join(root, filepath.FromSlash(name))
	buf := make([]byte, 1024)
	n, err := unix.Llistxattr(p, buf)
	if errors.Is(err, unix.ERANGE) {
		if n, err = unix.Llistxattr(p, nil); err == nil {
			buf = make([]byte, n)
			n, err = unix.Llistxattr(p, buf)
		}
	}
	if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing extended attributes of /%s: %w", name, err)
	}
	var out []Xattr
	for _, attr := range strings.Split(string(buf[:n]), "\x00") {
		if attr == "" || !keepXattr(attr) {
			continue
		}
		sz, err := unix.Lgetxattr(p, attr, nil)
		if err != nil {
			return nil, fmt.Errorf("reading %s of /%s: %w", attr, name, err)
		}
		val := make([]byte, sz)
		if sz, err = unix.Lgetxattr(p, attr, val); err != nil {
			return nil, fmt.Errorf("reading %s of /%s: %w", attr, name, err)
		}
		out = append(out, Xattr{Path: "/" + name, Name: attr, Value: val[:sz]})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// WriteXattrManifest writes xs in the XattrManifest format.
func WriteXattrManifest(w io.Writer, xs []Xattr) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintln(bw, "# wwboot: security extended attributes of the image's files (newc cpio carries none);")
	fmt.Fprintln(bw, "# /etc/wwboot/restore-xattrs puts them back at boot. NAME VALUE SETCAP-TEXT PATH")
	for _, x := range xs {
		if strings.ContainsAny(x.Path, "\n") || strings.ContainsAny(x.Name, " \t\n") {
			continue
		}
		text := "-"
		if x.Name == "security.capability" {
			if t, ok := CapabilityText(x.Value); ok {
				text = strings.ReplaceAll(t, " ", ";")
			}
		}
		fmt.Fprintf(bw, "%s 0x%s %s %s\n", x.Name, hex.EncodeToString(x.Value), text, x.Path)
	}
	return bw.Flush()
}

// ParseXattrManifest reads an XattrManifest. A malformed line is an error
// naming its number.
func ParseXattrManifest(r io.Reader) ([]Xattr, error) {
	var out []Xattr
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.SplitN(line, " ", 4)
		if len(f) != 4 || !strings.HasPrefix(f[1], "0x") || !strings.HasPrefix(f[3], "/") {
			return nil, fmt.Errorf("xattr manifest line %d: want NAME 0xVALUE TEXT /PATH", n)
		}
		val, err := hex.DecodeString(f[1][2:])
		if err != nil {
			return nil, fmt.Errorf("xattr manifest line %d: %w", n, err)
		}
		out = append(out, Xattr{Path: f[3], Name: f[0], Value: val})
	}
	return out, sc.Err()
}

// RestoreXattrs sets xs on the files below root (not following symlinks),
// as /etc/wwboot/restore-xattrs does on the node; it returns how many it
// set and the errors of the others, joined.
func RestoreXattrs(root string, xs []Xattr) (int, error) {
	var errs []error
	set := 0
	for _, x := range xs {
		p := filepath.Join(root, filepath.FromSlash(filepath.Clean("/"+x.Path)))
		if err := unix.Lsetxattr(p, x.Name, x.Value, 0); err != nil {
			errs = append(errs, fmt.Errorf("%s on %s: %w", x.Name, x.Path, err))
			continue
		}
		set++
	}
	return set, errors.Join(errs...)
}

// capNames are the capability names by number (linux/capability.h).
var capNames = []string{
	"chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid",
	"setpcap", "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw",
	"ipc_lock", "ipc_owner", "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct",
	"sys_admin", "sys_boot", "sys_nice", "sys_resource", "sys_time", "sys_tty_config", "mknod",
	"lease", "audit_write", "audit_control", "setfcap", "mac_override", "mac_admin", "syslog",
	"wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf", "checkpoint_restore",
}

// CapabilityText renders a security.capability value (struct
// vfs_cap_data, revisions 1 to 3) as setcap's text, e.g.
// "cap_net_raw=ep". ok is false for a value it cannot read, a namespaced
// capability (revision 3 with a root uid other than 0) or an unknown
// capability number.
func CapabilityText(v []byte) (string, bool) {
	if len(v) < 4 {
		return "", false
	}
	magic := binary.LittleEndian.Uint32(v)
	words := 0
	switch magic & 0xff000000 {
	case 0x01000000:
		words = 1
	case 0x02000000:
		words = 2
	case 0x03000000:
		words = 2
		if len(v) != 4+8*words+4 || binary.LittleEndian.Uint32(v[4+8*words:]) != 0 {
			return "", false
		}
	default:
		return "", false
	}
	if len(v) < 4+8*words {
		return "", false
	}
	var perm, inh uint64
	for i := 0; i < words; i++ {
		perm |= uint64(binary.LittleEndian.Uint32(v[4+8*i:])) << (32 * i)
		inh |= uint64(binary.LittleEndian.Uint32(v[8+8*i:])) << (32 * i)
	}
	eff := magic&1 != 0
	groups := map[string][]string{}
	var order []string
	for c := 0; c < 64; c++ {
		p, i := perm&(1<<c) != 0, inh&(1<<c) != 0
		if !p && !i {
			continue
		}
		if c >= len(capNames) {
			return "", false
		}
		flags := ""
		if eff {
			flags += "e"
		}
		if i {
			flags += "i"
		}
		if p {
			flags += "p"
		}
		if _, ok := groups[flags]; !ok {
			order = append(order, flags)
		}
		groups[flags] = append(groups[flags], "cap_"+capNames[c])
	}
	if len(order) == 0 {
		return "", false
	}
	clauses := make([]string, len(order))
	for i, f := range order {
		clauses[i] = strings.Join(groups[f], ",") + "=" + f
	}
	return strings.Join(clauses, " "), true
}
