package image

import (
	"bufio"
	"bytes"
	"fmt"
	"path"
	"strings"
)

// DefaultExcludes returns the patterns applied unless
// Options.NoDefaultExcludes is set: the contents of the kernel's virtual file
// systems and of scratch and cache directories. The directories themselves
// stay (they are mount points), and so do the device nodes early boot needs
// before devtmpfs is mounted.
func DefaultExcludes() []string {
	return []string{
		"/proc/*",
		"/sys/*",
		"/dev/*",
		"!/dev/console",
		"!/dev/null",
		"!/dev/zero",
		"!/dev/tty",
		"!/dev/ptmx",
		"!/dev/random",
		"!/dev/urandom",
		"/tmp/*",
		"/var/tmp/*",
		"/run/*",
		"/var/cache/apt/*",
		"/var/cache/dnf/*",
		"/var/cache/yum/*",
		"/var/cache/zypp/*",
		"/var/cache/pacman/pkg/*",
		"/var/cache/apk/*",
	}
}

// ExcludesFile is where an image lists its own exclude patterns, one per
// line, as Warewulf does (# starts a comment).
const ExcludesFile = "/etc/warewulf/excludes"

// Excluder decides which paths of a tree stay out of an image. Patterns are
// path.Match globs. One that contains a "/" (other than a trailing one) is
// matched against the whole slash path from the tree root, with a leading
// "/" ("/usr/share/doc/*"; "usr/share/doc/*" means the same); one without is
// matched against the base name at any depth ("*.pyc"). A pattern that
// matches a directory excludes all of it; a trailing "/" is ignored. A
// pattern starting with "!" re-includes what an earlier pattern excluded; the
// last matching pattern wins. A re-include only works for entries whose
// directory is itself included.
type Excluder struct {
	pats []pattern
}

type pattern struct {
	glob   string
	negate bool
	base   bool // match the base name only
}

// NewExcluder compiles patterns, reporting the first malformed one.
func NewExcluder(patterns ...string) (*Excluder, error) {
	e := &Excluder{}
	if err := e.Add("", patterns...); err != nil {
		return nil, err
	}
	return e, nil
}

// Add appends patterns; origin names where they came from in errors.
func (e *Excluder) Add(origin string, patterns ...string) error {
	for i, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" || strings.HasPrefix(p, "#") {
			continue
		}
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		p = strings.TrimRight(p, "/")
		base := !strings.Contains(p, "/")
		if !base && !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		if p == "" {
			continue
		}
		if _, err := path.Match(p, "/"); err != nil {
			where := fmt.Sprintf("pattern %d", i+1)
			if origin != "" {
				where = fmt.Sprintf("%s line %d", origin, i+1)
			}
			return fmt.Errorf("exclude %s %q: %w; fix the glob", where, patterns[i], err)
		}
		e.pats = append(e.pats, pattern{glob: p, negate: neg, base: base})
	}
	return nil
}

// AddFile adds the patterns of an excludes file's content; name is used in
// error messages.
func (e *Excluder) AddFile(name string, content []byte) error {
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(content))
	sc.Buffer(make([]byte, 4096), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", name, err)
	}
	return e.Add(name, lines...)
}

// Patterns returns the compiled patterns in order, as they would be written
// to an excludes file.
func (e *Excluder) Patterns() []string {
	out := make([]string, len(e.pats))
	for i, p := range e.pats {
		out[i] = p.glob
		if p.negate {
			out[i] = "!" + p.glob
		}
	}
	return out
}

// Excluded reports whether the entry at slash path p (relative to the tree
// root, with or without a leading "/") is excluded.
func (e *Excluder) Excluded(p string) bool {
	if e == nil || len(e.pats) == 0 {
		return false
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	ex := false
	name := path.Base(p)
	for _, pt := range e.pats {
		subject := p
		if pt.base {
			subject = name
		}
		if ok, _ := path.Match(pt.glob, subject); ok {
			ex = !pt.negate
		}
	}
	return ex
}
