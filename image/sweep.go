package image

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/wwboot/wwboot/busy"
)

// Sweep removes what killed imports and builds left in the store (issue 11
// item 7): half-unpacked archive trees (roots/.NAME.new-*), replaced trees
// not yet removed (roots/.NAME.old-*), archive spools
// (roots/.wwboot-spool-*), trees under roots/ that no image uses (an import
// killed after unpacking, before publishing), and every file under tmp/
// (images and kernels being compressed or copied). Published images and
// their files are never touched; blobs no image references are Prune's.
//
// It runs only when no import, build or delete is running in any process
// (each holds a shared lock on the store's .busy file while it runs; see
// package busy), and reports whether it ran and the paths it removed.
// OpenStore, Import, Build, Delete and Prune sweep too.
func (s *Store) Sweep(ctx context.Context) (removed []string, ran bool, err error) {
	ran, err = busy.Sweep(s.dir, func() error {
		removed, err = s.sweepLeftovers(ctx)
		return err
	})
	return removed, ran, err
}

// begin starts a writer operation: a sweep if nothing else runs, then the
// shared busy lock until release.
func (s *Store) begin(ctx context.Context) (release func(), err error) {
	return busy.Begin(s.dir, func() error {
		_, err := s.sweepLeftovers(ctx)
		return err
	})
}

// sweepLeftovers removes the leftovers; the caller holds the exclusive
// busy lock.
func (s *Store) sweepLeftovers(ctx context.Context) ([]string, error) {
	// The index as it is now (not as last checked): another process may
	// have published an image a moment ago.
	used := map[string]bool{}
	s.mu.Lock()
	err := s.reloadLocked(true)
	for _, m := range s.idx.Images {
		used[s.abs(m).Root] = true
	}
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	rm := func(p string) {
		if err := removeTree(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
			return
		}
		removed = append(removed, p)
	}
	roots := filepath.Join(s.dir, rootsDir)
	ents, err := os.ReadDir(roots)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range ents {
		n, p := e.Name(), filepath.Join(roots, e.Name())
		switch {
		case strings.HasPrefix(n, ".") && (strings.Contains(n, ".new-") || strings.Contains(n, ".old-") || strings.HasPrefix(n, ".wwboot-spool-")):
			rm(p)
		case !strings.HasPrefix(n, ".") && ValidName(n) == nil && !used[p]:
			rm(p)
		}
	}
	tmps, err := os.ReadDir(filepath.Join(s.dir, tmpDir))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, e := range tmps {
		rm(filepath.Join(s.dir, tmpDir, e.Name()))
	}
	return removed, errors.Join(errs...)
}
