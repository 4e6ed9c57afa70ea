package overlay

import (
	"bytes"
	"io/fs"
	"path"
)

// privateKeyMarker ends the first line of every PEM and OpenSSH private key
// ("-----BEGIN OPENSSH PRIVATE KEY-----", "... RSA PRIVATE KEY-----",
// "... ENCRYPTED PRIVATE KEY-----").
var privateKeyMarker = []byte("PRIVATE KEY-----")

// hasPrivateKey reports whether data holds a private key.
func hasPrivateKey(data []byte) bool { return bytes.Contains(data, privateKeyMarker) }

// privateOutput says whether out, a file rendered from template f, is a
// secret: it holds a private key (SSHHostKey, an included key file, a
// literal one); its template reads a secret field of the inventory (a BMC
// password: secretField); its execution read a server file that denies
// others read (a munge key, /etc/shadow, Warewulf's shared private host
// keys), whatever the output's mode; or its template reads any file
// (Include, IncludeBlock, IncludeFrom) into a file not every user may read.
// A template that only reads the rest of the inventory makes no secret
// whatever its mode (NetworkManager wants its connection files 0600).
func privateOutput(f *File, out output) bool {
	return f.deps.privKey || f.deps.secretField || out.secret ||
		(f.deps.reads && f.Mode&0o004 == 0) || hasPrivateKey(out.data)
}

// Private lists, in archive order, the regular files of the archive that
// are secrets of the node: a private key anywhere (a template calling
// SSHHostKey, an included or literal key), a template that reads a secret
// field (a BMC password) or a server file without read permission for
// others (a munge key), a template that reads any file (Include,
// IncludeBlock, IncludeFrom) into a file without read permission for
// others, and a static file without read permission for others. A
// server hands such files only to the node itself: package provision
// refuses a system overlay (which anyone may fetch) that has any.
func (a *Archive) Private() []string {
	var out []string
	for _, s := range a.parts {
		for _, rec := range s.recs {
			if rec.private && rec.mode&0o170000 == sIFREG {
				out = append(out, rec.path)
			}
		}
	}
	return out
}

// redactedNode returns n with its secrets replaced by stand-in: the BMC
// password, and the asset key unless keepAsset (a node's own asset key may
// go in its own system overlay, which is served only to requests carrying
// it; another node's may not). n itself is not changed.
func redactedNode(n *Node, standIn string, keepAsset bool) *Node {
	hasPW := n.Ipmi != nil && n.Ipmi.Password != ""
	hasAsset := !keepAsset && n.AssetKey != ""
	if !hasPW && !hasAsset {
		return n
	}
	c := *n
	if hasPW {
		ipmi := *n.Ipmi
		ipmi.Password = standIn
		c.Ipmi = &ipmi
	}
	if hasAsset {
		c.AssetKey = standIn
	}
	return &c
}

// markHidden marks private the static regular files under a directory of
// the overlay that others may not enter (mode without o+x, like Debian's
// /etc/ssl/private): on the node only the owner reaches them, so they are
// the node's secrets whatever their own mode. It returns those
// directories, for the templates' outputs (layout.markOutputs).
func markHidden(dirs, files []*record) map[string]bool {
	closed := map[string]bool{}
	for _, d := range dirs {
		if d.mode&0o001 == 0 {
			closed[d.path] = true
		}
	}
	for _, f := range files {
		if f.mode&0o170000 == sIFREG && under(closed, f.path) {
			f.private = true
		}
	}
	return closed
}

// under says whether p lies below one of the directories in closed.
func under(closed map[string]bool, p string) bool {
	if len(closed) == 0 {
		return false
	}
	for d := path.Dir(p); d != "." && d != "/"; d = path.Dir(d) {
		if closed[d] {
			return true
		}
	}
	return false
}

// markOutputs marks private the regular files templates wrote below a
// directory of the layout that others may not enter, as markHidden does
// for static files.
func (l *layout) markOutputs(outs []layered) {
	for _, o := range outs {
		if o.rec.mode&0o170000 == sIFREG && under(l.closed, o.rec.path) {
			o.rec.private = true
		}
	}
}

// FileMode is the mode an archive gets when it is stored in a file (overlay
// build, overlay render -o): 0600 when it carries a private file of the
// node (Private), so that no other user of the server reads the node's
// host keys from it, else 0644.
func (a *Archive) FileMode() fs.FileMode {
	if len(a.Private()) > 0 {
		return 0o600
	}
	return 0o644
}
