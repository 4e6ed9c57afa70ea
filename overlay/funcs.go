package overlay

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
)

// baseFuncs are the functions every template sees: sprig's text functions,
// then Warewulf's (which win on a name clash) and wwboot's additions. The
// functions that need the render's state are placeholders here, replaced in
// each instance.
func baseFuncs() template.FuncMap {
	m := sprig.TxtFuncMap()
	for k, v := range pureFuncs() {
		m[k] = v
	}
	for k, v := range (&state{}).funcs() {
		m[k] = v
	}
	return m
}

// pureFuncs are the stateless template functions.
func pureFuncs() template.FuncMap {
	return template.FuncMap{
		"basename":          path.Base,
		"inc":               func(i int) int { return i + 1 },
		"dec":               func(i int) int { return i - 1 },
		"UniqueField":       UniqueField,
		"SystemdEscape":     SystemdEscape,
		"SystemdEscapePath": SystemdEscapePath,
		"ShellQuote":        ShellQuote,
	}
}

// UniqueField filters input, a text of sep-separated records one per line,
// keeping the first line for each value of field index (0-based). Lines
// with fewer fields are kept. Order is preserved. Template argument order:
// {{ $text | UniqueField ":" 0 }}.
func UniqueField(sep string, index int, input string) string {
	seen := map[string]bool{}
	var b strings.Builder
	for _, line := range strings.SplitAfter(input, "\n") {
		if line == "" {
			continue
		}
		fields := strings.Split(strings.TrimSuffix(line, "\n"), sep)
		if index >= 0 && index < len(fields) {
			if seen[fields[index]] {
				continue
			}
			seen[fields[index]] = true
		}
		b.WriteString(line)
	}
	return b.String()
}

// SystemdEscape escapes s the way systemd-escape does for unit names: "/"
// becomes "-", and every byte other than ASCII letters, digits, ":", "_"
// and a non-leading "." becomes \xNN.
func SystemdEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '/':
			b.WriteByte('-')
		case c == '.' && i == 0, !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == ':' || c == '_' || c == '.'):
			fmt.Fprintf(&b, `\x%02x`, c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// SystemdEscapePath escapes a path as systemd-escape --path does: the path
// is cleaned and stripped of leading and trailing slashes ("/" becomes "-")
// and then escaped like SystemdEscape.
func SystemdEscapePath(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	if p == "" {
		return "-"
	}
	return SystemdEscape(p)
}

// ShellQuote quotes s for a POSIX shell: 'it'\”s'. (wwboot extension.)
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// state is one template execution's side channel: files split off with
// file, symlinks, abort, and the server files read.
type state struct {
	r        *Renderer
	node     *Node
	overlay  string
	file     string
	nonce    string
	names    []string // file(...) names by marker index
	links    []string // softlink targets by marker index
	aborted  bool
	reads    []fileStamp
	keyTypes []string
	secret   bool // read a file that denies others read, or a private key
}

// marker returns the in-band marker for a file or softlink directive: NUL
// bytes and a random nonce, so node data can never forge one (Warewulf
// uses a plain-text comment that a tag value could imitate).
func (s *state) marker(kind byte, i int) string {
	return "\x00" + s.nonce + string(kind) + strconv.Itoa(i) + "\x00"
}

func (s *state) funcs() template.FuncMap {
	return template.FuncMap{
		"file": func(name string) string {
			s.names = append(s.names, name)
			return s.marker('F', len(s.names)-1)
		},
		"softlink": func(target string) string {
			s.links = append(s.links, target)
			return s.marker('L', len(s.links)-1)
		},
		"ImportLink": func(p string) (string, error) {
			s.stamp(p)
			target, err := os.Readlink(p)
			if err != nil {
				return "", fmt.Errorf("ImportLink %s: %w", p, err)
			}
			s.links = append(s.links, target)
			return s.marker('L', len(s.links)-1), nil
		},
		"readlink": func(p string) (string, error) {
			s.stamp(p)
			return filepath.EvalSymlinks(p)
		},
		"abort":    func() string { s.aborted = true; return "" },
		"nobackup": func() string { return "" },
		"Include": func(p string) string {
			data, err := s.include(p)
			if err != nil && s.r != nil {
				s.r.log.Debug("overlay: Include found nothing", "overlay", s.overlay, "file", s.file, "path", p, "err", err)
			}
			return trimNL(string(data))
		},
		"IncludeBlock": func(p, stop string) (string, error) {
			data, err := s.include(p)
			if err != nil {
				// Warewulf (templateFileBlock) logs and gives the stop
				// string alone, so the rest of the template still renders.
				if s.r != nil {
					s.r.log.Info("overlay: IncludeBlock found nothing", "overlay", s.overlay, "file", s.file, "path", p, "err", err)
				}
				return stop, nil
			}
			var b strings.Builder
			sc := bufio.NewScanner(bytes.NewReader(data))
			sc.Buffer(nil, 16<<20)
			for sc.Scan() {
				if strings.Contains(sc.Text(), stop) {
					break
				}
				b.WriteString(sc.Text())
				b.WriteByte('\n')
			}
			b.WriteString(stop)
			return b.String(), sc.Err()
		},
		"IncludeFrom": func(img, p string) string {
			if img == "" || s.r == nil || s.r.opts.ImageRoot == nil {
				return ""
			}
			root := s.r.opts.ImageRoot(img)
			if root == "" {
				s.r.log.Warn("overlay: IncludeFrom names an image that does not exist", "overlay", s.overlay, "file", s.file, "image", img, "path", p)
				return ""
			}
			data, err := s.readTree(root, p)
			if err != nil {
				s.r.log.Warn("overlay: IncludeFrom found nothing", "overlay", s.overlay, "file", s.file, "image", img, "path", p, "err", err)
			}
			return trimNL(string(data))
		},
		"AgentBinary": s.agentBinary,
		"ClusterCA":   s.clusterCA,
		"SSHHostKey": func(typ string) (string, error) {
			return s.hostKey(typ, false)
		},
		"SSHHostPubKey": func(typ string) (string, error) {
			return s.hostKey(typ, true)
		},
		"MachineID": s.machineID,
		"IgnitionJson": func() string {
			if s.node == nil {
				return ""
			}
			return IgnitionJSON(s.node)
		},
	}
}

// include reads p for Include and IncludeBlock, as Warewulf's
// templateFileInclude and templateFileBlock (internal/pkg/overlay/funcmap.go)
// do: an absolute path as it is, a relative one below
// Paths.Sysconfdir/warewulf (e.g. /etc/warewulf/keys/ssh_host_rsa_key).
// A relative path stays in that directory: ".." and symlinks that leave it
// are refused (readInTree), and only a regular file of at most
// maxIncludeBytes is read, absolute or not. When Warewulf's key files keys/ssh_host_TYPE_key
// and .pub are not there, they come from wwboot's cluster-wide key set
// (Options.KeyDir/shared, created on first use): Warewulf's ssh.host_keys
// overlay then gives every node the same real keys, as it does on a
// Warewulf server, instead of empty files.
func (s *state) include(p string) ([]byte, error) {
	if strings.HasPrefix(p, "/") {
		return s.readTree("/", p)
	}
	data, err := s.readTree(s.sysconfWarewulf(), p)
	if errors.Is(err, fs.ErrNotExist) && s.r != nil && s.r.opts.KeyDir != "" {
		if typ, public, ok := warewulfKeyFile(p); ok {
			k, kerr := s.r.sharedKeys.get("", typ)
			if kerr != nil {
				return nil, kerr
			}
			s.reads = append(s.reads, k.stamps...)
			if public {
				return []byte(k.public), nil
			}
			s.secret = true
			return []byte(k.private), nil
		}
	}
	return data, err
}

// readTree reads p inside the tree at root (readInTree) and records what
// the render read, for the cache's staleness check: the path as named and
// the file actually read, when a link made them differ.
func (s *state) readTree(root, p string) ([]byte, error) {
	named := filepath.Join(root, filepath.Clean("/"+p))
	s.stamp(named)
	data, real, private, err := readInTree(root, p)
	if err == nil && real != named {
		s.stamp(real)
	}
	s.secret = s.secret || private
	return data, err
}

// sysconfWarewulf is Warewulf's configuration directory,
// Paths.Sysconfdir/warewulf.
func (s *state) sysconfWarewulf() string {
	dir := "/etc"
	if s.r != nil {
		dir = s.r.opts.Server.Paths.Sysconfdir
	}
	return filepath.Join(dir, "warewulf")
}

// warewulfKeyFile recognizes Warewulf's host key files below its
// configuration directory: keys/ssh_host_TYPE_key and its .pub.
func warewulfKeyFile(p string) (typ string, public bool, ok bool) {
	name, found := strings.CutPrefix(path.Clean(p), "keys/ssh_host_")
	if !found {
		return "", false, false
	}
	name, public = strings.CutSuffix(name, ".pub")
	typ, found = strings.CutSuffix(name, "_key")
	if !found || !validKeyType(typ) {
		return "", false, false
	}
	return typ, public, true
}

func (s *state) stamp(p string) { s.reads = append(s.reads, stampOf(p)) }

func (s *state) hostKey(typ string, public bool) (string, error) {
	if s.r == nil || s.node == nil || s.node.Id == "" {
		return "", fmt.Errorf("SSHHostKey: no node")
	}
	k, err := s.r.keys.get(s.node.Id, typ)
	if err != nil {
		return "", err
	}
	s.reads = append(s.reads, k.stamps...)
	if public {
		return trimNL(k.public), nil
	}
	return trimNL(k.private), nil
}

// machineID returns the node's machine-id, 32 lower-case hex digits
// without the newline (wwboot extension; see hostKeys).
func (s *state) machineID() (string, error) {
	if s.r == nil || s.node == nil || s.node.Id == "" {
		return "", fmt.Errorf("MachineID: no node")
	}
	id, st, err := s.r.keys.machineID(s.node.Id)
	if err != nil {
		return "", err
	}
	s.reads = append(s.reads, st)
	return trimNL(id), nil
}

// split applies the file and softlink directives to a template's output.
// The rule is Warewulf 4.7's: output switches to the new file exactly where
// file is called — text after the call, on the same line or not, goes to
// the new file, and several calls on one line are all honoured. Text before
// the first file call is dropped when named files follow, unless a softlink
// made it a link (then the template's own path stays a link). A relative
// name is resolved beside the template (nominal's directory), an absolute
// one from the overlay root. A softlink call turns the current output into
// a symlink to its target (what was written to it is dropped).
func (s *state) split(out []byte, nominal string) ([]output, error) {
	type cur struct {
		name string
		buf  bytes.Buffer
		link *string
	}
	c := &cur{name: nominal}
	files := []*cur{c}
	named := false
	for {
		i, end, kind, idx := s.nextMarker(out)
		if i < 0 {
			c.buf.Write(out)
			break
		}
		c.buf.Write(out[:i])
		out = out[end:]
		switch kind {
		case 'F':
			name, err := s.fileName(nominal, s.names[idx])
			if err != nil {
				return nil, err
			}
			if !named && files[0].link == nil {
				files = files[:0] // what came before the first file() is not written
			}
			named = true
			c = &cur{name: name}
			files = append(files, c)
		case 'L':
			t := s.links[idx]
			c.link = &t
		}
	}
	res := make([]output, 0, len(files))
	for _, f := range files {
		if f.link != nil {
			res = append(res, output{path: f.name, link: *f.link, isLink: true})
		} else {
			res = append(res, output{path: f.name, data: f.buf.Bytes()})
		}
	}
	return res, nil
}

// fileName resolves the argument of file for the template whose own
// output path is nominal: an absolute name from the overlay root, a
// relative one from nominal's directory. Names that leave the root, or
// name it, are refused.
func (s *state) fileName(nominal, name string) (string, error) {
	if base := path.Base(name); name == "" || strings.HasSuffix(name, "/") || base == "." || base == ".." {
		return "", fmt.Errorf("file %q: not a file name: name a file, like \"x.conf\" or \"/etc/x.conf\"", name)
	}
	full := name
	if !strings.HasPrefix(name, "/") {
		full = path.Join(path.Dir(nominal), name)
		if full == ".." || strings.HasPrefix(full, "../") {
			return "", fmt.Errorf("file %q: the name leaves the overlay root: use a path below the overlay root", name)
		}
	}
	c, ok := cleanRel(full)
	if !ok {
		return "", fmt.Errorf("file %q: not a file path below the overlay root: use a name like \"x.conf\" or \"/etc/x.conf\"", name)
	}
	if dir := path.Dir(nominal); strings.HasPrefix(dir+"/", c+"/") {
		// "../etc" beside etc/t.ww, or a node field that is empty or "..":
		// the archive would hold this directory as a file too.
		return "", fmt.Errorf("file %q: the name is the directory %s itself, not a file in it: check the node fields the name is made of", name, c)
	}
	return c, nil
}

// nextMarker finds the first valid directive marker in out: its start and
// end offsets, its kind ('F' or 'L') and index. i is -1 when there is none.
func (s *state) nextMarker(out []byte) (i, end int, kind byte, idx int) {
	prefix := []byte("\x00" + s.nonce)
	off := 0
	for {
		j := bytes.Index(out[off:], prefix)
		if j < 0 {
			return -1, 0, 0, 0
		}
		start := off + j
		rest := out[start+len(prefix):]
		e := bytes.IndexByte(rest, 0)
		if e > 1 {
			k := rest[0]
			n, err := strconv.Atoi(string(rest[1:e]))
			if err == nil && n >= 0 && (k == 'F' && n < len(s.names) || k == 'L' && n < len(s.links)) {
				return start, start + len(prefix) + e + 1, k, n
			}
		}
		off = start + 1
	}
}

// output is one file a template produced.
type output struct {
	path   string
	data   []byte
	link   string
	isLink bool
	secret bool // the execution that wrote it read a secret (state.secret)
}

// clusterCA returns the cluster CA's certificate (ServerInfo.Paths.CACert,
// PEM) for the wwclient overlay, or "" when none is configured (agent tls:
// false). It is public: unlike Include, where the file lies (the state
// directory may sit under /root) does not make it a secret; and a file that
// is not a PEM certificate, or holds a private key, is an error rather than
// something to hand out. (wwboot extension.)
func (s *state) clusterCA() (string, error) {
	p := ""
	if s.r != nil {
		p = s.r.opts.Server.Paths.CACert
	}
	if p == "" {
		return "", nil
	}
	s.stamp(p)
	data, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("the cluster CA certificate %s: %w", p, err)
	}
	if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("-----BEGIN CERTIFICATE-----")) || hasPrivateKey(data) {
		return "", fmt.Errorf("the cluster CA certificate %s: not a PEM certificate alone", p)
	}
	return trimNL(string(data)), nil
}

// agentBinary returns the node agent binary (ServerInfo.Paths.Agent) byte
// for byte, for the wwclient overlay. A missing or empty file is an error
// that says how to build it: a node without its agent would boot without
// its runtime overlay and nobody would know.
func (s *state) agentBinary() (string, error) {
	p := ""
	if s.r != nil {
		p = s.r.opts.Server.Paths.Agent
	}
	if p == "" {
		return "", errors.New("no node agent binary is configured (ServerInfo.Paths.Agent; wwboot.conf: agent): " +
			"build it with CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o /usr/local/bin/wwboot-agent ./cmd/wwboot-agent")
	}
	s.stamp(p)
	data, err := os.ReadFile(p)
	if err == nil && len(data) == 0 {
		err = errors.New("empty file")
	}
	if err != nil {
		return "", fmt.Errorf("the node agent binary %s: %w: build it with CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o %s ./cmd/wwboot-agent "+
			"(or set agent: in wwboot.conf to where it is)", p, err, p)
	}
	return string(data), nil
}
