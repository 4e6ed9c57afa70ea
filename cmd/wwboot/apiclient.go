package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// apiClient talks to a running wwboot serve's API (/api/v1).
type apiClient struct {
	err   error  // a --token-file that cannot be used
	base  string // server URL, no trailing slash
	token []byte // nil: none (a loopback caller may read without)
	http  *http.Client
}

// newAPIClient returns a client of server; the token comes from tokenFile
// when it is readable (a user who cannot read it goes without, which
// suffices for reads from the server's own machine).
func (a *app) newAPIClient(server, tokenFile string, timeout time.Duration) *apiClient {
	c := &apiClient{base: strings.TrimSuffix(server, "/"), http: &http.Client{Timeout: timeout}}
	explicit := tokenFile != ""
	if !explicit {
		tokenFile = a.path(apiTokenFile)
	}
	tok, err := readAdminToken(tokenFile)
	switch {
	case err == nil:
		c.token = []byte(tok)
	case explicit:
		c.err = err // a token file the user named must be usable
	case a.log != nil:
		a.log.Debug("no API token", "err", err)
	}
	return c
}

// apiStatusError is an API answer other than the one expected.
type apiStatusError struct {
	URL    string
	Code   int
	Status string
	Msg    string
}

func (e *apiStatusError) Error() string {
	if e.Msg != "" {
		return fmt.Sprintf("%s answered %s: %s", e.URL, e.Status, e.Msg)
	}
	return fmt.Sprintf("%s answered %s", e.URL, e.Status)
}

// do sends method path with body (nil: none) and decodes a JSON answer into
// out when the code is one of ok.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any, ok ...int) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, fmt.Errorf("--server %q: %w", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if len(c.token) > 0 {
		req.Header.Set("Authorization", "Bearer "+string(c.token))
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, fmt.Errorf("%w (is wwboot serve running? point --server at it)", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %w", u, err)
	}
	for _, code := range ok {
		if resp.StatusCode == code {
			if out != nil {
				if err := json.Unmarshal(b, out); err != nil {
					return resp.StatusCode, fmt.Errorf("%s: %w", u, err)
				}
			}
			return resp.StatusCode, nil
		}
	}
	var e struct{ Error string }
	_ = json.Unmarshal(b, &e)
	se := &apiStatusError{URL: u, Code: resp.StatusCode, Status: resp.Status, Msg: e.Error}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
		se.Msg += " (ask from the server itself, from one of its admin networks (wwboot.conf: admin networks), " +
			"or with its token: ROOT/admin.token on the server, readable by you, or --token-file)"
	}
	return resp.StatusCode, se
}
