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

	"github.com/spf13/cobra"
)

// tokenFileEnv names the environment variable that points clients at an
// admin token file when --token-file is not given (as WWBOOT_ROOT does for
// --root): a workstation keeps a copy of the server's ROOT/admin.token.
const tokenFileEnv = "WWBOOT_TOKEN_FILE"

// tokenFileFlag adds --token-file, the admin token a client of a running
// server sends, to cmd.
func tokenFileFlag(cmd *cobra.Command, tokenFile *string) {
	cmd.Flags().StringVar(tokenFile, "token-file", "", "the admin token sent to --server as a bearer token (default: env "+
		tokenFileEnv+", else ROOT/admin.token; without one only the server's own machine and its admin networks may read)")
}

// apiClient talks to a running wwboot serve's API (/api/v1) and its
// listings (/status).
type apiClient struct {
	err   error  // a --token-file that cannot be used
	base  string // server URL, no trailing slash
	token []byte // nil: none (a loopback caller may read without)
	// tokenFile is where the token was (or would have been) read, and
	// tokenErr why none was read: both go into the advice of a refusal.
	tokenFile string
	tokenErr  error
	http      *http.Client
}

// newAPIClient returns a client of server; the token comes from tokenFile,
// else the file env WWBOOT_TOKEN_FILE names, else ROOT/admin.token. A file
// the user named must be usable; the default one is used when it is
// readable (a user who cannot read it goes without, which suffices for
// reads from the server's own machine).
func (a *app) newAPIClient(server, tokenFile string, timeout time.Duration) *apiClient {
	c := &apiClient{base: strings.TrimSuffix(server, "/"), http: &http.Client{Timeout: timeout}}
	if tokenFile == "" && a.getenv != nil {
		tokenFile = a.getenv(tokenFileEnv)
	}
	explicit := tokenFile != ""
	if !explicit {
		tokenFile = a.path(apiTokenFile)
	}
	c.tokenFile = tokenFile
	tok, err := readAdminToken(tokenFile)
	switch {
	case err == nil && tok == "":
		c.tokenErr = fmt.Errorf("%s does not exist", tokenFile)
		if explicit {
			c.err = fmt.Errorf("--token-file %s: no such file", tokenFile)
		}
	case err == nil:
		c.token = []byte(tok)
	case explicit:
		c.err = err // a token file the user named must be usable
	default:
		c.tokenErr = err
		if a.log != nil {
			a.log.Debug("no API token", "err", err)
		}
	}
	return c
}

// refusalAdvice says what to do about a 401 or 403 from the server.
func (c *apiClient) refusalAdvice() string {
	if len(c.token) > 0 {
		return fmt.Sprintf("the server refused the token of %s: it is not this server's; copy the server's ROOT/admin.token "+
			"(mode 0600) and pass it with --token-file or env %s, or ask from the server itself or one of its admin "+
			"networks (wwboot.conf: admin networks)", c.tokenFile, tokenFileEnv)
	}
	return fmt.Sprintf("no admin token was sent (%v): the server answers only itself (loopback), its admin networks "+
		"(wwboot.conf: admin networks) and holders of its token; copy the server's ROOT/admin.token (mode 0600, "+
		"readable by you) and pass it with --token-file or env %s, or run the command on the server", c.tokenErr, tokenFileEnv)
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
		if se.Msg == "" {
			se.Msg = strings.TrimSpace(string(b)) // /status answers in plain text
		}
		se.Msg += " (" + c.refusalAdvice() + ")"
	}
	return resp.StatusCode, se
}
