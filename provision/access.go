package provision

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// Admin says who may read the server's listings (/status, /metrics): what
// names the nodes, their MACs, addresses and clients, which an attacker on
// the provisioning network could use to ask for another node's files.
// Nodes never need them; each node only asks for its own routes.
//
// A request is allowed when it comes from the server itself (FromServer),
// from one of Nets, or carries "Authorization: Bearer TOKEN" (the scheme
// in any case, RFC 9110 section 11.1) with TOKEN equal to Token. The zero
// value allows the server itself only.
type Admin struct {
	// Nets are the admin networks whose addresses may read the listings
	// (wwboot.conf: admin networks). IPv4-mapped IPv6 clients match their
	// IPv4 address.
	Nets []netip.Prefix
	// Token, when not empty, lets any client that sends it as a bearer
	// token read the listings (wwboot keeps it in ROOT/admin.token). It
	// crosses the network in clear text over plain HTTP.
	Token string
}

// allowed reports whether r may read the listings.
func (a Admin) allowed(r *http.Request) bool {
	if FromServer(r) {
		return true
	}
	if ap := remoteAddr(r); ap.IsValid() {
		for _, p := range a.Nets {
			if p.Contains(ap.Addr()) {
				return true
			}
		}
	}
	if a.Token == "" {
		return false
	}
	tok, ok := bearer(r)
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(a.Token)) == 1
}

// FromServer reports whether r came from the server's own machine: from a
// loopback address, or from the very address it arrived on. An attacker
// on the network cannot open a TCP connection from either: Linux drops a
// packet from outside that claims one of the host's addresses or a
// loopback one (martians; net.ipv4.conf.*.accept_local is 0 by default),
// and the answer to a spoofed SYN would never leave the host. It is the
// one rule of "the server itself" for the listings (Admin) and the API's
// reads (TokenAuth).
func FromServer(r *http.Request) bool {
	ap := remoteAddr(r)
	if !ap.IsValid() {
		return false
	}
	addr := ap.Addr()
	return addr.IsLoopback() || addr == localAddr(r)
}

// localAddr is the server's address the request arrived on (invalid when
// unknown). A connection whose two ends have the same address comes from
// the server itself: Linux drops a packet from outside that claims one of
// its own addresses as source (net.ipv4.conf.*.accept_local is 0 by
// default), and the answer to a spoofed SYN would never leave the host.
func localAddr(r *http.Request) netip.Addr {
	if la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok && la != nil {
		if ap, err := netip.ParseAddrPort(la.String()); err == nil {
			return ap.Addr().Unmap()
		}
	}
	return netip.Addr{}
}

// adminOnly wraps a listing: callers that Admin does not allow get 403 and
// no byte of the listing.
func (h *Handler) adminOnly(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.opts.Admin.allowed(r) {
			h.metrics.refused.WithLabelValues(RefusedAdmin).Inc()
			h.log.Debug("refused a listing", "path", r.URL.Path, "client", r.RemoteAddr)
			http.Error(w, r.URL.Path+" is for the server's administrators: ask from the server itself (loopback), "+
				"from an admin network, or with the admin bearer token", http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// ErrSystemSecret is the error (wrapped) of a system overlay that carries a
// private file, a secret of the node (overlay.Archive.Private: private
// keys, files read by Include into a file others may not read, static
// files others may not read). The system overlay goes to anyone who asks
// (iPXE fetches it from an unprivileged port, with no check a node could
// pass), so such a file must come in the runtime overlay, which only the
// node itself gets.
var ErrSystemSecret = errors.New("a system overlay carries private files")

// systemSecretError explains a refused system overlay to the administrator.
func systemSecretError(node string, files []string) error {
	shown := files
	if len(shown) > 5 {
		shown = shown[:5]
	}
	return fmt.Errorf("%w: node %s: %s (a private key, or a file others may not read): the system overlay goes to anyone on the "+
		"provisioning network who asks; put the overlay that makes them in the runtime overlays (wwboot profile set "+
		"PROFILE --runtime-overlays ...), which only the node gets, or make them readable by all if they are not secret",
		ErrSystemSecret, node, strings.Join(shown, ", "))
}
