package dhcp

import (
	"os"
	"path/filepath"
	"time"
)

// staleTempAge is how old a lease file's temporary file must be to count
// as left by a killed writer: a write takes milliseconds.
const staleTempAge = time.Minute

// sweepLeaseTemps removes the temporary files that writers of the lease
// file at path killed mid-write left (.NAME.tmp-*, see writeFileAtomic),
// once they are older than staleTempAge, so a live writer's file is never
// taken (issue 11 item 7). It returns how many it removed.
func sweepLeaseTemps(path string) int {
	stale, _ := filepath.Glob(filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*"))
	n := 0
	for _, p := range stale {
		if fi, err := os.Lstat(p); err == nil && fi.Mode().IsRegular() && time.Since(fi.ModTime()) >= staleTempAge && os.Remove(p) == nil {
			n++
		}
	}
	return n
}
