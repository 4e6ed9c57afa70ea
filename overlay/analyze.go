package overlay

import (
	"text/template"
	"text/template/parse"
)

// deps is what a template reads, found by walking its parse trees.
type deps struct {
	node      bool // reads a field of the node (or everything)
	allNodes  bool // reads .AllNodes (or everything)
	external  bool // calls a function that reads server files
	hostKeys  bool // calls SSHHostKey/SSHHostPubKey
	machineID bool // calls MachineID
	privKey   bool // calls SSHHostKey (a private key)
	reads     bool // calls Include, IncludeBlock or IncludeFrom (a file that may be a secret)
	// secretField: names a secret field of the inventory anywhere
	// (isSecretField: .Ipmi.Password, $.Ipmi.Password, .Password inside
	// a with or range, Warewulf's older .IpmiPassword).
	secretField bool
	// dumps: prints a whole structure that may hold a secret (toJson,
	// printf, print... of ., .Ipmi or .AllNodes, or {{ .Ipmi }} alone).
	// Only CheckPrivate uses it: a render finds such secrets by value.
	dumps bool
}

// isDumpFunc says whether a template function prints whatever it is given,
// structures included.
func isDumpFunc(name string) bool {
	switch name {
	case "toJson", "toPrettyJson", "toRawJson", "mustToJson", "mustToPrettyJson", "mustToRawJson",
		"toYaml", "toToml", "toString", "print", "printf", "println", "js", "html", "urlquery":
		return true
	}
	return false
}

// wholeSecretHolder says whether n is a value that holds secrets whole:
// dot, .Ipmi or .AllNodes (reached any way), or (index ...) of them.
func wholeSecretHolder(n parse.Node) bool {
	holder := func(idents []string) bool {
		if len(idents) == 0 {
			return false
		}
		last := idents[len(idents)-1]
		return last == "Ipmi" || last == "AllNodes" || last == "Node"
	}
	switch n := n.(type) {
	case *parse.DotNode:
		return true
	case *parse.FieldNode:
		return holder(n.Ident)
	case *parse.ChainNode:
		return holder(n.Field) || (len(n.Field) == 0 && wholeSecretHolder(n.Node))
	case *parse.VariableNode:
		return (len(n.Ident) == 1 && n.Ident[0] == "$") || holder(n.Ident[1:])
	case *parse.PipeNode:
		for _, c := range n.Cmds {
			if len(c.Args) > 1 {
				if id, ok := c.Args[0].(*parse.IdentifierNode); ok && id.Ident == "index" && wholeSecretHolder(c.Args[1]) {
					return true
				}
			}
			if len(c.Args) == 1 && wholeSecretHolder(c.Args[0]) {
				return true
			}
		}
	}
	return false
}

// dumpsIn marks d when pipe p prints a whole secret holder: a dump function
// given one as an argument or piped one, or an action that prints one alone
// ({{ .Ipmi }}; not {{ . }}, which prints list elements in a range).
func (d *deps) dumpsIn(p *parse.PipeNode, action bool) {
	if p == nil || len(p.Cmds) == 0 {
		return
	}
	first := p.Cmds[0]
	piped := len(first.Args) == 1 && wholeSecretHolder(first.Args[0])
	for i, c := range p.Cmds {
		if len(c.Args) == 0 {
			continue
		}
		id, ok := c.Args[0].(*parse.IdentifierNode)
		if !ok || !isDumpFunc(id.Ident) {
			continue
		}
		if i > 0 && piped {
			d.dumps = true
		}
		for _, a := range c.Args[1:] {
			if wholeSecretHolder(a) {
				d.dumps = true
			}
		}
	}
	if action && len(p.Cmds) == 1 && len(first.Args) == 1 {
		if _, dot := first.Args[0].(*parse.DotNode); !dot && wholeSecretHolder(first.Args[0]) {
			d.dumps = true
		}
	}
}

// isSecretField says whether a field name names a secret of the node in the
// template data: the BMC password (Ipmi.Password; IpmiPassword in Warewulf
// before 4.4). Any field of that name counts, whatever it is reached
// through, so the check errs on the side of the node.
func isSecretField(name string) bool {
	return name == "Password" || name == "IpmiPassword"
}

// fieldNames marks d when one of names is a secret field.
func (d *deps) fieldNames(names []string) {
	for _, n := range names {
		if isSecretField(n) {
			d.secretField = true
		}
	}
}

// nodeFuncs are functions whose result depends on the node being rendered.
func isNodeFunc(name string) bool {
	switch name {
	case "SSHHostKey", "SSHHostPubKey", "MachineID", "IgnitionJson":
		return true
	}
	return false
}

func isExternalFunc(name string) bool {
	switch name {
	case "Include", "IncludeFrom", "IncludeBlock", "ImportLink", "readlink", "SSHHostKey", "SSHHostPubKey", "AgentBinary", "ClusterCA", "MachineID":
		return true
	}
	return false
}

// analyze walks every tree of t. The analysis is conservative: whatever it
// cannot follow (the whole data passed to a function or a sub-template,
// $ on its own) counts as reading the node and the inventory.
func analyze(t *template.Template) deps {
	var d deps
	for _, tt := range t.Templates() {
		if tt.Tree != nil && tt.Tree.Root != nil {
			walk(&d, tt.Tree.Root, true)
		}
	}
	return d
}

func (d *deps) everything() { d.node, d.allNodes = true, true }

func (d *deps) rootField(name string) {
	switch {
	case name == "AllNodes":
		d.allNodes = true
	case isServerField(name):
	default:
		d.node = true
	}
}

// walk visits n; root says whether dot is the template's data here.
func walk(d *deps, n parse.Node, root bool) {
	switch n := n.(type) {
	case nil:
	case *parse.ListNode:
		if n == nil {
			return
		}
		for _, c := range n.Nodes {
			walk(d, c, root)
		}
	case *parse.ActionNode:
		d.dumpsIn(n.Pipe, true)
		walk(d, n.Pipe, root)
	case *parse.PipeNode:
		if n == nil {
			return
		}
		d.dumpsIn(n, false)
		for _, c := range n.Cmds {
			walk(d, c, root)
		}
	case *parse.CommandNode:
		for _, a := range n.Args {
			walk(d, a, root)
		}
	case *parse.IfNode:
		walk(d, n.Pipe, root)
		walk(d, n.List, root)
		walk(d, n.ElseList, root)
	case *parse.RangeNode:
		walk(d, n.Pipe, root)
		walk(d, n.List, false)
		walk(d, n.ElseList, root)
	case *parse.WithNode:
		walk(d, n.Pipe, root)
		walk(d, n.List, false)
		walk(d, n.ElseList, root)
	case *parse.TemplateNode:
		walk(d, n.Pipe, root)
	case *parse.FieldNode:
		d.fieldNames(n.Ident)
		if root && len(n.Ident) > 0 {
			d.rootField(n.Ident[0])
		}
	case *parse.DotNode:
		if root {
			d.everything()
		}
	case *parse.VariableNode:
		d.fieldNames(n.Ident)
		if len(n.Ident) > 0 && n.Ident[0] == "$" {
			if len(n.Ident) > 1 {
				d.rootField(n.Ident[1])
			} else {
				d.everything()
			}
		}
	case *parse.ChainNode:
		d.fieldNames(n.Field)
		walk(d, n.Node, root)
		if _, isDot := n.Node.(*parse.DotNode); isDot && root && len(n.Field) > 0 {
			d.rootField(n.Field[0])
		}
	case *parse.IdentifierNode:
		if isNodeFunc(n.Ident) {
			d.node = true
			d.hostKeys = d.hostKeys || n.Ident != "MachineID"
			d.machineID = d.machineID || n.Ident == "MachineID"
		}
		if isExternalFunc(n.Ident) {
			d.external = true
		}
		switch n.Ident {
		case "SSHHostKey":
			d.privKey = true
		case "Include", "IncludeBlock", "IncludeFrom":
			d.reads = true
		}
	}
}
