package overlay

import (
	"fmt"
	"path/filepath"
	"strings"
	"text/template"
	"text/template/parse"
)

// PrivateFile is a file of an overlay that would make an archive holding
// it private (see Archive.Private), found by CheckPrivate without
// rendering anything.
type PrivateFile struct {
	Overlay string // the overlay's name
	Path    string // the file's path in the archive ("etc/ssh/ssh_host_ed25519_key")
	Why     string // what makes it private, for a person
}

// CheckPrivate lists, in overlay order and file order within each
// overlay, the files of overlays names that may carry a private file of
// the node (Archive.Private's rules), by reading the overlays' files and
// templates only: it renders nothing, so it makes no host key and reads
// no node. A file is listed when:
//
//   - it is a static file that denies others read (mode without o+r), or
//     holds a private key;
//   - its template calls SSHHostKey (a private host key), or holds a
//     private key in its text;
//   - its template names the BMC password (.Ipmi.Password, however
//     reached, or Warewulf's older .IpmiPassword), or prints a whole
//     structure that holds it (toJson ., printf "%v" .Ipmi, toJson
//     .AllNodes);
//   - its template reads files (Include, IncludeBlock, IncludeFrom) into a
//     file that denies others read;
//   - its template includes (Include, IncludeBlock) a server file that
//     denies others read or holds a private key, or Warewulf's shared
//     private host key (keys/ssh_host_TYPE_key), or a file whose name it
//     computes from the node (which may be any of those).
//
// The path of an Include is known when it is a literal or a field of the
// server's data (.Paths, .Ssh ...: Options.Server); it is then looked up
// as the render would (an absolute path as it is, a relative one below
// Paths.Sysconfdir/warewulf). A template that does not parse renders
// nothing and is not listed. An error names an overlay that cannot be
// loaded (ErrNotFound for an unknown name).
func (r *Renderer) CheckPrivate(names []string) ([]PrivateFile, error) {
	var out []PrivateFile
	srv := r.opts.Server.newData(nil, nil, r.now())
	for _, name := range names {
		o, err := r.Overlay(name)
		if err != nil {
			return nil, fmt.Errorf("overlay %s: %w", name, err)
		}
		for _, f := range o.Files {
			if !f.Mode.IsRegular() {
				continue
			}
			if why := r.privateWhy(f, srv); why != "" {
				out = append(out, PrivateFile{Overlay: name, Path: f.OutputPath(), Why: why})
			}
		}
	}
	return out, nil
}

// privateWhy says why f may be private, or "" if it is not; srv is the
// server's part of the template data, to resolve Include paths.
func (r *Renderer) privateWhy(f *File, srv *TemplateData) string {
	if !f.IsTemplate() {
		switch {
		case f.Mode.Perm()&0o004 == 0:
			return fmt.Sprintf("a static file of mode %04o, which denies others read", f.Mode.Perm())
		case hasPrivateKey(f.Data):
			return "a static file holding a private key"
		}
		return ""
	}
	if f.tmpl == nil {
		return "" // does not parse: renders nothing
	}
	d := f.deps
	switch {
	case hasPrivateKey(f.Data):
		return "its template holds a private key"
	case d.privKey:
		return "its template calls SSHHostKey (the node's private host key)"
	case d.secretField:
		return "its template names the BMC password (.Ipmi.Password)"
	case d.dumps:
		return "its template prints a whole structure that holds secrets (toJson, printf... of ., .Ipmi or .AllNodes): the server refuses it as soon as a node has a BMC password or an asset key"
	case d.reads && f.Mode.Perm()&0o004 == 0:
		return fmt.Sprintf("its template reads files (Include...) into a file of mode %04o, which denies others read", f.Mode.Perm())
	case d.reads:
		return r.includesPrivate(f.tmpl, srv)
	}
	return ""
}

// includesPrivate looks at every Include and IncludeBlock call of t and
// says why one of them may read a private file, or "".
func (r *Renderer) includesPrivate(t *template.Template, srv *TemplateData) string {
	var why string
	for _, tt := range t.Templates() {
		if tt.Tree == nil || tt.Tree.Root == nil {
			continue
		}
		eachCommand(tt.Tree.Root, func(c *parse.CommandNode) {
			if why != "" || len(c.Args) < 2 {
				return
			}
			id, ok := c.Args[0].(*parse.IdentifierNode)
			if !ok || (id.Ident != "Include" && id.Ident != "IncludeBlock") {
				return
			}
			p, ok := staticArg(c.Args[1], srv)
			if !ok {
				why = fmt.Sprintf("its template includes a file it names from the node (%s %s), which may deny others read", id.Ident, c.Args[1])
				return
			}
			why = r.includedWhy(id.Ident, p)
		})
	}
	return why
}

// includedWhy says why Include of p reads a private file, or "", looking
// p up as state.include does.
func (r *Renderer) includedWhy(fn, p string) string {
	root := "/"
	if !strings.HasPrefix(p, "/") {
		root = filepath.Join(r.opts.Server.Paths.Sysconfdir, "warewulf")
		if _, public, ok := warewulfKeyFile(p); ok && !public {
			return fmt.Sprintf("its template includes %s, a private host key (Warewulf's shared key set)", p)
		}
	}
	data, real, private, err := readInTree(root, p)
	switch {
	case err != nil:
		return ""
	case private:
		return fmt.Sprintf("its template includes %s (%s), which denies others read on the server", p, real)
	case hasPrivateKey(data):
		return fmt.Sprintf("its template includes %s (%s), which holds a private key", p, real)
	}
	return ""
}

// staticArg evaluates n when it is a string literal or a field of the
// server's part of the template data (srv), which is the same for every
// node.
func staticArg(n parse.Node, srv *TemplateData) (string, bool) {
	switch n := n.(type) {
	case *parse.StringNode:
		return n.Text, true
	case *parse.FieldNode:
		if len(n.Ident) == 0 || !isServerField(n.Ident[0]) {
			return "", false
		}
	case *parse.VariableNode:
		if len(n.Ident) < 2 || n.Ident[0] != "$" || !isServerField(n.Ident[1]) {
			return "", false
		}
	default:
		return "", false
	}
	// A field access of the data alone: no function, no node.
	t, err := template.New("arg").Option("missingkey=zero").Parse("{{" + n.String() + "}}")
	if err != nil {
		return "", false
	}
	var b strings.Builder
	if err := t.Execute(&b, srv); err != nil {
		return "", false
	}
	return b.String(), true
}

// eachCommand calls fn for every command of the tree below n.
func eachCommand(n parse.Node, fn func(*parse.CommandNode)) {
	switch n := n.(type) {
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			eachCommand(c, fn)
		}
	case *parse.ActionNode:
		eachCommand(n.Pipe, fn)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		for _, c := range n.Cmds {
			eachCommand(c, fn)
		}
	case *parse.CommandNode:
		fn(n)
		for _, a := range n.Args {
			eachCommand(a, fn)
		}
	case *parse.IfNode:
		eachCommand(n.Pipe, fn)
		eachCommand(n.List, fn)
		eachCommand(n.ElseList, fn)
	case *parse.RangeNode:
		eachCommand(n.Pipe, fn)
		eachCommand(n.List, fn)
		eachCommand(n.ElseList, fn)
	case *parse.WithNode:
		eachCommand(n.Pipe, fn)
		eachCommand(n.List, fn)
		eachCommand(n.ElseList, fn)
	case *parse.TemplateNode:
		eachCommand(n.Pipe, fn)
	case *parse.ChainNode:
		eachCommand(n.Node, fn)
	}
}
