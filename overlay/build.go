package overlay

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/wwboot/wwboot/busy"
	"github.com/wwboot/wwboot/nodedb"
)

// BuildResult is one node's outcome of Build.
type BuildResult struct {
	Node    string   // node name
	System  *Archive // system archive (nil on error)
	Runtime *Archive // runtime archive (nil on error)
	Err     error    // what went wrong for this node
}

// BuiltPath is where Build stores node's archive of kind below dir:
// dir/NODE/KIND.cpio.gz.
func BuiltPath(dir, node string, kind Kind) string {
	return filepath.Join(dir, node, string(kind)+".cpio.gz")
}

// Build renders the system and runtime archives of the named nodes (every
// node of db when names is empty) on Options.Workers cores and, when
// Options.BuildDir is set, stores them there atomically (BuiltPath). Host
// keys still missing are generated first, in one batch. It returns one
// result per node, in order, and the errors joined.
func (r *Renderer) Build(ctx context.Context, db *nodedb.DB, names ...string) ([]BuildResult, error) {
	if db == nil {
		return nil, errors.New("overlay: Build needs an inventory")
	}
	if len(names) == 0 {
		names = db.Names()
	}
	nodes := make([]*nodedb.Node, len(names))
	for i, name := range names {
		n, err := db.Node(name)
		if err != nil {
			return nil, fmt.Errorf("overlay build: %w: check the name with wwboot node list", err)
		}
		nodes[i] = n
	}
	// Host keys and machine-ids first, in one batch (one file system sync,
	// not one per file).
	var keyNodes, idNodes []string
	for _, n := range nodes {
		var keys, id bool
		for _, k := range []Kind{System, Runtime} {
			if l, err := r.layout(r.OverlayNames(n, k)); err == nil {
				keys, id = keys || l.hostKeys, id || l.machineID
			}
		}
		if keys {
			keyNodes = append(keyNodes, n.ID)
		}
		if id {
			idNodes = append(idNodes, n.ID)
		}
	}
	if r.opts.KeyDir != "" {
		if err := r.keys.ensure(keyNodes, r.opts.Server.Ssh.KeyTypes, idNodes, r.opts.Workers); err != nil {
			return nil, fmt.Errorf("overlay build: generating ssh host keys and machine-ids in %s: %w", r.opts.KeyDir, err)
		}
	}
	res := make([]BuildResult, len(nodes))
	parallel(len(nodes), r.opts.Workers, func(i int) {
		n := nodes[i]
		res[i].Node = n.ID
		if err := ctx.Err(); err != nil {
			res[i].Err = err
			return
		}
		sys, err := r.Render(ctx, db, n, System)
		if err != nil {
			res[i].Err = err
			return
		}
		run, err := r.Render(ctx, db, n, Runtime)
		if err != nil {
			res[i].Err = err
			return
		}
		res[i].System, res[i].Runtime = sys, run
	})
	var errs []error
	for _, rr := range res {
		if rr.Err != nil {
			errs = append(errs, fmt.Errorf("node %s: %w", rr.Node, rr.Err))
		}
	}
	if r.opts.BuildDir != "" {
		if err := r.store(res); err != nil {
			errs = append(errs, err)
		}
	}
	return res, errors.Join(errs...)
}

// store writes the built archives that changed: every file to a temporary
// name, one file system sync, the renames, one more sync. Each file appears whole or
// not at all, and a thousand nodes cost two syncs, not two thousand fsyncs.
func (r *Renderer) store(res []BuildResult) error {
	if err := os.MkdirAll(r.opts.BuildDir, 0o755); err != nil {
		return err
	}
	// Temporary archives of killed builds are swept first, unless another
	// build is storing right now; ours are safe from other sweeps until done.
	release, err := busy.Begin(r.opts.BuildDir, func() error {
		_, err := sweepTemps(r.opts.BuildDir)
		return err
	})
	if err != nil {
		return err
	}
	defer release()
	type pending struct{ tmp, final string }
	var todo []pending
	errs := make([]error, len(res))
	tmps := make([][]pending, len(res))
	parallel(len(res), r.opts.Workers, func(i int) {
		rr := res[i]
		if rr.Err != nil {
			return
		}
		if rr.Node == "" || rr.Node == "." || rr.Node == ".." || strings.ContainsAny(rr.Node, "/\x00") {
			errs[i] = fmt.Errorf("node %q: the name cannot be a directory name: rename the node", rr.Node)
			return
		}
		dir := filepath.Join(r.opts.BuildDir, rr.Node)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs[i] = err
			return
		}
		for _, a := range []*Archive{rr.System, rr.Runtime} {
			final := BuiltPath(r.opts.BuildDir, rr.Node, a.Kind)
			if sameContent(final, a) {
				// Unchanged: no write, nothing to sync; but an archive
				// stored 0644 by an older version gets its mode.
				if err := os.Chmod(final, a.FileMode()); err != nil {
					errs[i] = fmt.Errorf("node %s: %w", rr.Node, err)
					return
				}
				continue
			}
			// A unique temporary name: two builds at once must not share one.
			f, err := os.CreateTemp(dir, ".tmp-"+filepath.Base(final)+"-*")
			if err != nil {
				errs[i] = fmt.Errorf("node %s: %w", rr.Node, err)
				return
			}
			tmp := f.Name()
			_, err = a.WriteTo(f)
			if err == nil {
				err = f.Chmod(a.FileMode())
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				os.Remove(tmp)
				errs[i] = fmt.Errorf("node %s: writing %s: %w", rr.Node, tmp, err)
				return
			}
			tmps[i] = append(tmps[i], pending{tmp, final})
		}
	})
	for _, t := range tmps {
		todo = append(todo, t...)
	}
	if len(todo) > 0 {
		if err := syncFS(r.opts.BuildDir); err != nil {
			return fmt.Errorf("syncing %s: %w", r.opts.BuildDir, err)
		}
		for _, p := range todo {
			if err := os.Rename(p.tmp, p.final); err != nil {
				return fmt.Errorf("storing %s: %w", p.final, err)
			}
		}
		if err := syncFS(r.opts.BuildDir); err != nil {
			return fmt.Errorf("syncing %s: %w", r.opts.BuildDir, err)
		}
	}
	return errors.Join(errs...)
}

// sameContent reports whether the file at p holds exactly a's bytes.
func sameContent(p string, a *Archive) bool {
	fi, err := os.Stat(p)
	if err != nil || fi.Size() != a.Size() || !fi.Mode().IsRegular() {
		return false
	}
	old, err := os.ReadFile(p)
	return err == nil && bytes.Equal(old, a.Bytes())
}
