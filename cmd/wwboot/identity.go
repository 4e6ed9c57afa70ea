package main

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/wwboot/wwboot/overlay"
)

// identityConfigText documents identityConfig in the wwboot.conf that
// `wwboot init` writes.
const identityConfigText = `# authorized keys: the file root's authorized_keys on every node come from (absolute path;
# default /root/.ssh/authorized_keys, the server's root keys, as Warewulf does)
# authorized keys: /root/.ssh/authorized_keys
# shared host keys: one SSH host key set for every node (ROOT/keys/shared, see 'wwboot keys import')
# instead of one per node
# shared host keys: false
# ssh key types: the host key types each node gets (default: ed25519, ecdsa, rsa)
# ssh key types: [ed25519, ecdsa, rsa]
# dns servers, dns search: resolv.conf of nodes whose inventory sets no DNS tags (DNS, DNS1...)
# nor domain/DNSSEARCH tags
# dns servers: [10.0.0.1]
# dns search: [cluster.example]
`

// identityConfig is the part of wwboot.conf about what nodes get as their
// identity and access (it is inlined into serveConfig).
type identityConfig struct {
	// AuthorizedKeys is the server file root's authorized_keys come from
	// ("" = /root/.ssh/authorized_keys).
	AuthorizedKeys string `yaml:"authorized keys"`
	// SharedHostKeys gives every node the one key set in ROOT/keys/shared.
	SharedHostKeys bool `yaml:"shared host keys"`
	// SSHKeyTypes are the host key types (nil = ed25519, ecdsa, rsa).
	SSHKeyTypes []string `yaml:"ssh key types"`
	// DNSServers and DNSSearch are resolv.conf's defaults.
	DNSServers []string `yaml:"dns servers"`
	DNSSearch  []string `yaml:"dns search"`
}

func (c *identityConfig) validate() error {
	if c.AuthorizedKeys != "" && !filepath.IsAbs(c.AuthorizedKeys) {
		return fmt.Errorf("authorized keys: %q: give an absolute path", c.AuthorizedKeys)
	}
	for _, t := range c.SSHKeyTypes {
		switch t {
		case "ed25519", "ecdsa", "rsa":
		default:
			return fmt.Errorf("ssh key types: %q: use ed25519, ecdsa or rsa", t)
		}
	}
	for _, s := range c.DNSServers {
		if _, err := netip.ParseAddr(s); err != nil {
			return fmt.Errorf("dns servers: %q is not an IP address", s)
		}
	}
	for _, s := range c.DNSSearch {
		if s == "" || strings.ContainsAny(s, " \t\n;,") {
			return fmt.Errorf("dns search: %q: give one domain name per list entry", s)
		}
	}
	return nil
}

// apply sets what templates see of these settings.
func (c *identityConfig) apply(srv *overlay.ServerInfo) {
	srv.Ssh.AuthorizedKeys = c.AuthorizedKeys
	if len(c.SSHKeyTypes) > 0 {
		srv.Ssh.KeyTypes = c.SSHKeyTypes
	}
	srv.Resolv = overlay.ResolvConf{Nameservers: c.DNSServers, Search: c.DNSSearch}
}

// newKeysCmd is `wwboot keys`: the cluster-wide SSH host key set.
func newKeysCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "SSH host keys: import a cluster-wide key set (as Warewulf keeps one)",
		Long: `Each node gets its own SSH host keys by default, kept in ROOT/keys/nodes/NODE.
With 'shared host keys: true' in wwboot.conf every node gets the one set in ROOT/keys/shared,
which 'wwboot keys import' fills, e.g. from a Warewulf server's /etc/warewulf/keys.`,
	}
	var overwrite bool
	imp := &cobra.Command{
		Use:   "import DIR",
		Short: "Make the ssh_host_*_key files in DIR the cluster-wide key set (a different set already there needs --overwrite)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if diff := sharedKeysDiffer(a.path("keys"), args[0]); len(diff) > 0 {
				if !overwrite {
					return fmt.Errorf("%s holds another cluster-wide key set (%s differ from %s): replacing it changes every "+
						"node's host keys (ssh then warns of a changed host key); pass --overwrite to replace it",
						a.path("keys", "shared"), strings.Join(diff, ", "), args[0])
				}
				fmt.Fprintf(a.stdout, "replacing the cluster-wide key set in %s (%s differ)\n", a.path("keys", "shared"), strings.Join(diff, ", "))
			}
			types, err := overlay.ImportHostKeys(a.path("keys"), args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "imported %s host keys into %s\n", strings.Join(types, ", "), a.path("keys", "shared"))
			cfg, err := loadServeConfig(a.path("wwboot.conf"))
			if err == nil && !cfg.SharedHostKeys {
				fmt.Fprintf(a.stdout, "nodes use them once %s says 'shared host keys: true' (then rebuild overlays and restart serve)\n", a.path("wwboot.conf"))
			}
			return nil
		},
	}
	imp.Flags().BoolVar(&overwrite, "overwrite", false, "replace a different key set already in ROOT/keys/shared")
	cmd.AddCommand(imp)
	return cmd
}

// sharedKeysDiffer names the private host key files of the cluster-wide set
// under keyDir (keyDir/shared/ssh_host_*_key) that src lacks or holds
// different, and those src adds to a set that exists; nil when there is no
// set yet or src holds the same one (importing it again changes nothing).
func sharedKeysDiffer(keyDir, src string) []string {
	have, _ := filepath.Glob(filepath.Join(keyDir, "shared", "ssh_host_*_key"))
	if len(have) == 0 {
		return nil
	}
	want, _ := filepath.Glob(filepath.Join(src, "ssh_host_*_key"))
	names := map[string]bool{}
	for _, p := range append(have, want...) {
		names[filepath.Base(p)] = true
	}
	var diff []string
	for name := range names {
		a, errA := os.ReadFile(filepath.Join(keyDir, "shared", name))
		b, errB := os.ReadFile(filepath.Join(src, name))
		if errA != nil || errB != nil || !bytes.Equal(a, b) {
			diff = append(diff, name)
		}
	}
	sort.Strings(diff)
	return diff
}
