package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/wwboot/wwboot/overlay"
)

// systemSecretsAllowed reports wwboot.conf's "system overlay secrets:"
// (false when the file cannot be read: the server would refuse then too).
func (a *app) systemSecretsAllowed() bool {
	cfg, err := loadServeConfig(a.path("wwboot.conf"))
	return err == nil && cfg.SystemSecrets
}

// warnSystemSecrets tells the administrator, when rendering offline, that
// `wwboot serve` will refuse node's system overlay ar (HTTP 500, see
// provision.ErrSystemSecret) because it carries private files; it returns
// whether it warned. Nothing is said for a runtime overlay, or when
// wwboot.conf accepts such overlays.
func warnSystemSecrets(w io.Writer, allowed bool, node string, k overlay.Kind, ar *overlay.Archive) bool {
	if allowed || k != overlay.System || ar == nil {
		return false
	}
	files := ar.Private()
	if len(files) == 0 {
		return false
	}
	list := "/" + strings.Join(files[:min(len(files), 3)], ", /")
	if len(files) > 3 {
		list += fmt.Sprintf(" and %d more", len(files)-3)
	}
	fmt.Fprintf(w, "wwboot: warning: node %s: its system overlay carries private files (%s): wwboot serve refuses it "+
		"(anyone on the provisioning network may fetch a system overlay); move the overlay that makes them to the "+
		"runtime overlays (wwboot profile set PROFILE --system-overlays ... --runtime-overlays ...), or accept it with "+
		"'system overlay secrets: true' in wwboot.conf\n", node, list)
	return true
}
