package provision

import (
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// TokenAuth checks API callers: a bearer token (Authorization: Bearer
// TOKEN, the scheme in any case as RFC 9110 section 11.1 has it, the token
// compared in constant time) and, for reads, the server's own machine
// (FromServer: loopback, or a connection from the address it arrived on).
// An empty Token accepts no token at all (changes are refused).
type TokenAuth struct {
	// Token is the secret callers present (wwboot keeps it in ROOT/admin.token).
	Token []byte
}

// IsLoopback reports whether r came from a loopback address (127.0.0.0/8,
// ::1). The rule for "the server's own machine" is FromServer, which also
// takes a connection from the server's own address.
func IsLoopback(r *http.Request) bool {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// bearer returns the token of an "Authorization: Bearer T" header; the
// scheme is matched without regard to case (RFC 9110 section 11.1, RFC
// 7235 section 2.1).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

// Check decides whether r may go on: with allowLoopback, a caller on the
// server's own machine (FromServer) needs no token. It returns 0 when allowed, else 401 (no token: the
// caller should authenticate) or 403 (a wrong token, or none configured)
// and a message saying what to do.
func (a TokenAuth) Check(r *http.Request, allowLoopback bool) (code int, msg string) {
	tok, ok := bearer(r)
	if !ok {
		if allowLoopback && FromServer(r) {
			return 0, ""
		}
		return http.StatusUnauthorized, "authentication required: send Authorization: Bearer TOKEN (the token is in ROOT/admin.token on the server)"
	}
	if len(a.Token) == 0 {
		return http.StatusForbidden, "this server has no API token configured; changes through the API are off"
	}
	if subtle.ConstantTimeCompare([]byte(tok), a.Token) != 1 {
		return http.StatusForbidden, "wrong API token"
	}
	return 0, ""
}

// Require wraps next so that only callers Check allows reach it; others
// get the code and a JSON error. It suits /status and /metrics too.
func (a TokenAuth) Require(allowLoopback bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, msg := a.Check(r, allowLoopback); code != 0 {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="wwboot"`)
			}
			writeAPIError(w, code, msg)
			return
		}
		next.ServeHTTP(w, r)
	})
}
