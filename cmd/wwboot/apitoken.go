package main

import (
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

// readAPIToken reads the token in path with readAdminToken's checks (mode
// 0600, at least 16 characters); unlike it, a missing file is an error
// wrapping fs.ErrNotExist, which ensureAPIToken creates the file on.
func readAPIToken(path string) ([]byte, error) {
	if _, err := os.Lstat(path); err != nil {
		return nil, fmt.Errorf("API token: %w", err)
	}
	tok, err := readAdminToken(path)
	if err != nil {
		return nil, err
	}
	return []byte(tok), nil
}
