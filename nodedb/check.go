package nodedb

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrAmbiguous is returned (wrapped) by lookups of an address that several
// nodes claim. It is not ErrNotFound: the address is known, its owner is not.
var ErrAmbiguous = errors.New("claimed by several nodes")

// Findings returns what the inventory holds that Warewulf 4.7 loads but a
// careful site would fix, in the order found: keys wwboot does not know
// (kept on rewrite), the same MAC or IP address on two nodes, profiles that
// do not exist or inherit in a cycle, a primary network naming no device,
// odd IPv6 values, node-only keys in a profile. Each names the file and
// line (when the inventory came from a file), the node or profile and the
// field. Loading does not fail on them; `wwboot node check` lists them and
// fails, and stores refuse an Update that adds one (NewFindings). The
// slice is shared: do not modify it.
func (db *DB) Findings() []*Error { return db.findings }

// NewFindings returns the findings of db that prev does not have (compared
// by node or profile, field and text, not by line), in db's order. Stores
// use it to let an edit keep the findings a file already had but refuse
// to add any. prev may be nil (every finding is new).
func (db *DB) NewFindings(prev *DB) []*Error {
	old := map[string]bool{}
	if prev != nil {
		for _, f := range prev.findings {
			old[findingKey(f)] = true
		}
	}
	var out []*Error
	for _, f := range db.findings {
		if !old[findingKey(f)] {
			out = append(out, f)
		}
	}
	return out
}

func findingKey(e *Error) string {
	return e.Kind + "\x00" + e.Name + "\x00" + e.Field + "\x00" + e.Err.Error()
}

// refuseNew fails when next has findings prev does not: an edit may not
// make the inventory less consistent than it was.
func refuseNew(prev, next *DB) error {
	nf := next.NewFindings(prev)
	if len(nf) == 0 {
		return nil
	}
	errs := make([]error, len(nf))
	for i, f := range nf {
		errs[i] = f
	}
	return fmt.Errorf("the change makes the inventory inconsistent (nothing was written): %w", errors.Join(errs...))
}

// checkChains reports, for every profile and node, names in its own
// profiles list that are no profile, and every profile cycle once. Warewulf
// loads both: it skips a missing profile (MergeNode) and stops a cycle at
// the repeat (getProfilesProfiles); chainOf does the same.
// nodes are cfg's node names, sorted.
func checkChains(cfg *Config, nodes []string, warn func(kind, name string, field []string, err error)) {
	missing := func(kind, name string, list []string) {
		for _, p := range list {
			if strings.HasPrefix(p, Negation) {
				continue
			}
			if _, ok := cfg.NodeProfiles[p]; !ok {
				warn(kind, name, []string{"profiles"}, fmt.Errorf("unknown profile %q: it is skipped, as Warewulf does; add it with 'wwboot profile add %s' or remove it from profiles", p, p))
			}
		}
	}
	const (
		white = iota
		gray
		black
	)
	color := map[string]int{}
	var path []string
	var walk func(p string)
	walk = func(p string) { // depth first, each profile once: linear
		color[p] = gray
		path = append(path, p)
		for _, q := range cfg.NodeProfiles[p].Profiles {
			if strings.HasPrefix(q, Negation) || cfg.NodeProfiles[q] == nil {
				continue
			}
			switch color[q] {
			case white:
				walk(q)
			case gray:
				cyc := append(slices.Clone(path[slices.Index(path, q):]), q)
				warn("profile", q, []string{"profiles"}, fmt.Errorf("profile cycle %s: Warewulf stops at the repeat, and so does wwboot; remove one of these inheritances", strings.Join(cyc, " -> ")))
			}
		}
		path = path[:len(path)-1]
		color[p] = black
	}
	for _, name := range sortedKeys(cfg.NodeProfiles) {
		missing("profile", name, cfg.NodeProfiles[name].Profiles)
		if color[name] == white {
			walk(name)
		}
	}
	for _, name := range nodes {
		missing("node", name, cfg.Nodes[name].Profiles)
	}
}

// setKey2 adds k to the set m, making it if needed.
func setKey2[K comparable](m map[K]bool, k K) map[K]bool {
	if m == nil {
		m = map[K]bool{}
	}
	m[k] = true
	return m
}
