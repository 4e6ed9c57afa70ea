package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"strings"

	"github.com/wwboot/wwboot/provision"
)

// accessConfigText documents accessConfig in the wwboot.conf that `wwboot
// init` writes.
const accessConfigText = `# admin networks: who may read /status and /metrics (node names, MACs, addresses) besides the
# server itself (loopback) and holders of the token in ROOT/admin.token (wwboot status sends it);
# nodes never need them. Example: [10.0.0.5/32, 192.168.100.0/24]
# admin networks: []
# system overlay secrets: serve a system overlay that carries private files (mode without read
# for others, like SSH private host keys) although anyone on the network may fetch it, as Warewulf
# does; default false: such an overlay is refused with an error naming the files (put the overlay
# in the runtime overlays, which only the node gets)
# system overlay secrets: false
`

// adminTokenFile is where, under ROOT, the admin bearer token is kept.
const adminTokenFile = "admin.token"

// accessConfig is the part of wwboot.conf about who may read what (it is
// inlined into serveConfig).
type accessConfig struct {
	// AdminNetworks may read the listings (CIDR prefixes or addresses).
	AdminNetworks []string `yaml:"admin networks"`
	// SystemSecrets serves system overlays with private files.
	SystemSecrets bool `yaml:"system overlay secrets"`
}

// adminNets parses AdminNetworks; a bare address means that address alone.
func (c *accessConfig) adminNets() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, s := range c.AdminNetworks {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, err2 := netip.ParseAddr(s)
			if err2 != nil {
				return nil, fmt.Errorf("admin networks: %q: give a network like 10.0.0.0/24 or an address", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

func (c *accessConfig) validate() error {
	_, err := c.adminNets()
	return err
}

// admin returns the provisioning handler's access rule: cfg's admin
// networks and the token in tokenPath (none if the file does not exist).
func (c *accessConfig) admin(tokenPath string) (provision.Admin, error) {
	nets, err := c.adminNets()
	if err != nil {
		return provision.Admin{}, err
	}
	tok, err := readAdminToken(tokenPath)
	if err != nil {
		return provision.Admin{}, err
	}
	return provision.Admin{Nets: nets, Token: tok}, nil
}

// readAdminToken reads the token in path; a missing file means none. A
// file others may read is refused: the token opens every listing.
func readAdminToken(path string) (string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("admin token: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("admin token %s: mode %v lets others read it: chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b := make([]byte, 1024)
	n, err := f.Read(b)
	if err != nil && n == 0 {
		return "", fmt.Errorf("admin token %s: %w (delete it and run wwboot init to make a new one)", path, err)
	}
	tok := strings.TrimSpace(string(b[:n]))
	if len(tok) < 16 {
		return "", fmt.Errorf("admin token %s: shorter than 16 characters: delete it and run wwboot init to make a new one", path)
	}
	return tok, nil
}
