// Package busy tells whether a directory's writers are at work, across
// processes, so that what killed writers left behind can be swept without
// touching the files of a writer still running.
//
// Each writer operation (an image import or build, an overlay build) holds
// a shared flock on DIR/.busy for as long as it runs; the kernel drops it
// when the process dies, kill -9 included. A sweep takes the exclusive lock
// without waiting: if it gets it, no operation is running in any process,
// so every temporary file or tree the writers use is a leftover. If it does
// not, the sweep is skipped and the leftovers wait for the next one.
//
// Locks are flock(2) on a file opened for each call, so two operations in
// one process exclude each other the same way as in two processes.
package busy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Name is the lock file's name in the directory.
const Name = ".busy"

func open(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, Name), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("busy lock in %s: %w", dir, err)
	}
	return f, nil
}

// Sweep calls clean under the exclusive lock of dir if no operation holds
// the shared one, and reports whether it did. clean's error is returned.
func Sweep(dir string, clean func() error) (bool, error) {
	f, err := open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close() // closing releases the lock
	if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return false, nil
		}
		return false, fmt.Errorf("busy lock in %s: %w", dir, err)
	}
	return true, clean()
}

// Begin starts a writer operation in dir: it first sweeps (clean runs if no
// other operation is running; nil means no sweep; its error is ignored, as
// a leftover that cannot be removed must not stop the operation, and Sweep
// reports it), then takes the shared lock, waiting while a sweep runs. Call
// release when the operation is over.
func Begin(dir string, clean func() error) (release func(), err error) {
	f, err := open(dir)
	if err != nil {
		return nil, err
	}
	if clean != nil {
		if err := flock(f, syscall.LOCK_EX|syscall.LOCK_NB); err == nil {
			// A leftover that cannot be removed must not stop the
			// operation; Sweep reports it.
			_ = clean()
		}
	}
	// From exclusive (or none) to shared: flock converts the lock, which
	// may let another sweep in between; ours created nothing yet.
	if err := flock(f, syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("busy lock in %s: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

func flock(f *os.File, how int) error {
	for {
		err := syscall.Flock(int(f.Fd()), how)
		if !errors.Is(err, syscall.EINTR) {
			return err
		}
	}
}
