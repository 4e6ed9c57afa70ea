package overlay

import (
	"errors"
	"fmt"
)

// ErrNotFound is returned (wrapped) when an overlay, or a file in one, does
// not exist.
var ErrNotFound = errors.New("not found")

// TemplateError is a failure to parse or execute a template, naming where.
type TemplateError struct {
	Overlay string // overlay name
	File    string // template path inside the overlay's rootfs
	Line    int    // line in the template (0 if unknown)
	Node    string // node being rendered ("" for a node-independent render)
	Err     error  // the underlying error
}

// Error implements error.
func (e *TemplateError) Error() string {
	loc := e.File
	if e.Line > 0 {
		loc = fmt.Sprintf("%s:%d", e.File, e.Line)
	}
	node := e.Node
	if node == "" {
		node = "(all nodes)"
	}
	return fmt.Sprintf("overlay %s, file %s, node %s: %v", e.Overlay, loc, node, e.Err)
}

// Unwrap returns the underlying error.
func (e *TemplateError) Unwrap() error { return e.Err }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
