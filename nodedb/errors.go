package nodedb

import (
	"errors"
	"fmt"
	"strings"
)

// ErrNotFound is returned (wrapped) when no node or profile matches a lookup.
var ErrNotFound = errors.New("not found")

// ErrExists is returned (wrapped) when adding a node or profile whose name is taken.
var ErrExists = errors.New("already exists")

// Error is a problem with the inventory, located as precisely as known: the
// file and line, the node or profile, and the field (a path of nodes.conf
// keys such as "network devices.default.hwaddr").
type Error struct {
	File  string // nodes.conf path, if the inventory came from a file
	Line  int    // 1-based line, 0 if unknown
	Kind  string // "node" or "profile", "" for file-level problems
	Name  string // node or profile name
	Field string // dotted path of YAML keys
	Err   error  // what is wrong and what to do
}

// Error formats the problem as FILE:LINE: KIND "NAME": FIELD: what is wrong.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	}
	if e.Kind != "" {
		fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, "%s: ", e.Field)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

// Unwrap returns the underlying cause.
func (e *Error) Unwrap() error { return e.Err }
