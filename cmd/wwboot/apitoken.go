package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// apiTokenFile is the API's bearer token under ROOT: `wwboot init` and
// `wwboot serve` create it (mode 0600), clients read it.
//
// It is the same file as adminTokenFile: one token opens the API and the
// /status and /metrics listings.
const apiTokenFile = adminTokenFile

// ensureAPIToken returns the token in path, creating the file with 32
// random bytes (hex) and mode 0600 when it does not exist. Creation is
// atomic and safe against a concurrent creator: the file appears whole, and
// whoever loses the race reads the winner's token.
func ensureAPIToken(path string) (tok []byte, created bool, err error) {
	if tok, err := readAPIToken(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, false, err
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, false, fmt.Errorf("API token: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".api.token-*")
	if err != nil {
		return nil, false, fmt.Errorf("API token: %w", err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	_, err = f.WriteString(hex.EncodeToString(raw) + "\n")
	if err == nil {
		err = f.Chmod(0o600)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, false, fmt.Errorf("API token %s: %w", path, err)
	}
	// Link, not rename: it fails when another process created the file
	// first, and then its token stands.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			tok, err := readAPIToken(path)
			return tok, false, err
		}
		return nil, false, fmt.Errorf("API token %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	tok, err = readAPIToken(path)
	return tok, err == nil, err
}

// readAPIToken reads the token in path (surrounding space trimmed). A file
// others can read is refused: the token would no longer be a secret.
func readAPIToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("API token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("API token %s: mode %04o lets others read it; chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("API token: %w", err)
	}
	b = bytes.TrimSpace(b)
	if len(b) < 16 {
		return nil, fmt.Errorf("API token %s: shorter than 16 characters; remove it and run wwboot init to make a new one", path)
	}
	return b, nil
}
