package overlay

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/wwboot/wwboot/busy"
)

// SweepBuilt removes the temporary archives that killed builds left in a
// build directory (Options.BuildDir/NODE/.tmp-*; issue 11 item 7: 3,300 of
// them after repeated kills). It runs only when no build is storing
// archives there in any process (Build holds a shared lock on
// BuildDir/.busy while it stores; see package busy), and reports whether it
// ran and the paths it removed. Build sweeps before it stores. A missing
// directory has nothing to sweep.
func SweepBuilt(dir string) (removed []string, ran bool, err error) {
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, true, nil
	}
	ran, err = busy.Sweep(dir, func() error {
		removed, err = sweepTemps(dir)
		return err
	})
	return removed, ran, err
}

// sweepTemps removes DIR/*/.tmp-*; the caller holds the exclusive lock.
func sweepTemps(dir string) ([]string, error) {
	nodes, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, n := range nodes {
		if !n.IsDir() {
			continue
		}
		ents, err := os.ReadDir(filepath.Join(dir, n.Name()))
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range ents {
			if !strings.HasPrefix(e.Name(), ".tmp-") {
				continue
			}
			p := filepath.Join(dir, n.Name(), e.Name())
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, p)
		}
	}
	return removed, errors.Join(errs...)
}
