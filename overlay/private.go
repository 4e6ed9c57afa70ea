package overlay

import "bytes"

// privateKeyMarker ends the first line of every PEM and OpenSSH private key
// ("-----BEGIN OPENSSH PRIVATE KEY-----", "... RSA PRIVATE KEY-----",
// "... ENCRYPTED PRIVATE KEY-----").
var privateKeyMarker = []byte("PRIVATE KEY-----")

// hasPrivateKey reports whether data holds a private key.
func hasPrivateKey(data []byte) bool { return bytes.Contains(data, privateKeyMarker) }

// privateOutput says whether a file rendered from template f with contents
// data is a secret: it holds a private key (SSHHostKey, an included key file,
// a literal one), or its template reads a file (Include, IncludeBlock,
// IncludeFrom: a munge key, /etc/shadow) into a file not every user may read.
// A template that only reads the inventory makes no secret whatever its mode
// (NetworkManager wants its connection files 0600).
func privateOutput(f *File, data []byte) bool {
	return f.deps.privKey || (f.deps.reads && f.Mode&0o004 == 0) || hasPrivateKey(data)
}

// Private lists, in archive order, the regular files of the archive that
// are secrets of the node: a private key anywhere (a template calling
// SSHHostKey, an included or literal key), a template that reads a file
// (Include, IncludeBlock, IncludeFrom) into a file without read permission
// for others, and a static file without read permission for others. A
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
