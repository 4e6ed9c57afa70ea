package overlay

import (
	"fmt"
	"path"
	"strings"
)

// treeConflict is a path an archive would hold twice or under a parent that
// is not a directory: a file where a directory is (a template's file name
// that cleans to its own directory, "etc"), or a file below a file.
type treeConflict struct {
	path string // the path held twice, or the record below a non-directory
	why  string
}

func (e *treeConflict) Error() string { return fmt.Sprintf("path %s: %s", e.path, e.why) }

// lookupFunc tells whether an archive part written before the records being
// checked holds p, and whether as a directory.
type lookupFunc func(p string) (exists, dir bool)

// checkTree verifies that recs, written after the parts outer describes
// (nil: none), name every path once and put every path under a directory
// (withParents has added the missing parents). The kernel unpacks a path
// twice in archive order, so a file and a directory of one name leave
// whichever came last, and whatever was below the directory is lost.
func checkTree(recs []*record, outer lookupFunc) error {
	mine := make(map[string]bool, len(recs)) // path → is a directory
	lookup := func(p string) (bool, bool) {
		if d, ok := mine[p]; ok {
			return true, d
		}
		if outer != nil {
			return outer(p)
		}
		return false, false
	}
	for _, r := range recs {
		if r.path == "" || r.path == "." || strings.HasPrefix(r.path, "/") || path.Clean(r.path) != r.path ||
			r.path == ".." || strings.HasPrefix(r.path, "../") {
			return &treeConflict{r.path, "not a clean path inside the archive"}
		}
		if ok, _ := lookup(r.path); ok {
			return &treeConflict{r.path, "written twice (a file and a directory of one name?)"}
		}
		if d := path.Dir(r.path); d != "." {
			if ok, isDir := lookup(d); !ok || !isDir {
				return &treeConflict{r.path, "its parent " + d + " is not a directory"}
			}
		}
		mine[r.path] = r.mode&0o170000 == sIFDIR
	}
	return nil
}

// staticLookup looks paths up in a layout's static part.
func staticLookup(l *layout) lookupFunc {
	return func(p string) (bool, bool) {
		if l.static.dirs[p] {
			return true, true
		}
		_, ok := l.layers[p]
		return ok, false
	}
}

// templateConflict turns a tree conflict caused by template outputs into a
// TemplateError naming the template.
func templateConflict(err error, outs []layered, names []string, node string) error {
	tc, ok := err.(*treeConflict)
	if !ok {
		return err
	}
	te := &TemplateError{Node: node, Err: fmt.Errorf("%w: check the names given to file", tc)}
	if o, ok := conflictSource(outs, tc.path); ok {
		te.File = o.file
		if o.layer >= 0 && o.layer < len(names) {
			te.Overlay = names[o.layer]
		}
	}
	return te
}

// conflictSource names the template output responsible for a tree conflict
// at p: the output at p, or else the first output below p.
func conflictSource(outs []layered, p string) (layered, bool) {
	for _, o := range outs {
		if o.rec.path == p {
			return o, true
		}
	}
	for _, o := range outs {
		if strings.HasPrefix(o.rec.path, p+"/") || strings.HasPrefix(p, o.rec.path+"/") {
			return o, true
		}
	}
	return layered{}, false
}
