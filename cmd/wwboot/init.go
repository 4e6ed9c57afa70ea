package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"
	"github.com/wwboot/wwboot/nodedb"
)

// defaultProfile is what `wwboot init` gives every new node: the built-in
// overlays, an init and a root in RAM, and kernel arguments, as Warewulf's
// default profile does. Like Warewulf's, it carries one overlay per network
// stack (ifupdown, NetworkManager, systemd-networkd): each writes only files
// its own tool reads, so the image decides which one takes effect; NICs are
// named by MAC both ways (udev rules and systemd .link files), and the node
// agent (wwclient) keeps the runtime overlay current.
//
// Unlike Warewulf's, ssh.host_keys is a runtime overlay: the system overlay
// goes to anyone on the provisioning network who asks (iPXE fetches it with
// no check a node could pass), the runtime overlay only to the node itself
// (privileged port, its address, asset key), and the wwclient overlay's
// wwboot-agent-sync unit puts it in place before sshd starts. machine-id
// stays a system overlay: systemd reads it before any unit runs, and it is
// an identifier, not a credential.
func defaultProfile() *nodedb.Record {
	return &nodedb.Record{
		Comment: "Every node gets this profile unless it names others",
		Ipxe:    "default",
		SystemOverlay: []string{"wwinit", "wwclient", "hostname", "machine-id", "udev.netname", "systemd.netname",
			"ifupdown", "NetworkManager", "systemd-networkd", "fstab", "resolv"},
		RuntimeOverlay: []string{"hosts", "ssh.authorized_keys", "ssh.host_keys"},
		// panic=30: a node whose kernel panics reboots after 30 s (and so
		// boots again from wwboot) instead of hanging with the message; no
		// argument here makes the kernel warn (crashkernel=no does).
		Kernel: &nodedb.Kernel{Args: []string{"quiet", "panic=30"}},
		Init:   "/sbin/init",
		Root:   "initramfs",
	}
}

func newInitCmd(a *app) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Create the state directory: wwboot.conf, nodes.conf with a default profile, admin.token, overlays/, images/, tftp/",
		Long: "Creates what is missing under --root and leaves everything that exists alone,\n" +
			"so running it again changes nothing.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			for _, dir := range []string{"", "overlays", "images", "tftp"} {
				if err := os.MkdirAll(a.path(dir), 0o755); err != nil {
					return fmt.Errorf("init: %w", err)
				}
			}
			if created, err := writeDefaultConfig(a.path("wwboot.conf")); err != nil {
				return err
			} else if created {
				fmt.Fprintf(a.stdout, "created %s (server settings, each explained; set interface: to the cluster network's)\n", a.path("wwboot.conf"))
			} else {
				fmt.Fprintf(a.stdout, "%s exists: left as it is\n", a.path("wwboot.conf"))
			}
			if _, created, err := ensureAPIToken(a.path(apiTokenFile)); err != nil {
				return fmt.Errorf("init: %w", err)
			} else if created {
				fmt.Fprintf(a.stdout, "created %s (the bearer token of the API, /status and /metrics for other machines; mode 0600)\n", a.path(apiTokenFile))
			}
			if conf, err := loadServeConfig(a.path("wwboot.conf")); err != nil {
				return fmt.Errorf("init: %w", err)
			} else if conf.AgentTLS {
				if _, err := openCA(a); err != nil {
					return fmt.Errorf("init: %w", err)
				}
				fmt.Fprintf(a.stdout, "cluster CA in %s (node agents get their certificates from it; ca.key is mode 0600)\n", a.path("tls"))
			}
			cfg := &nodedb.Config{NodeProfiles: map[string]*nodedb.Record{"default": defaultProfile()}}
			_, err := nodedb.Create(cmd.Context(), a.path("nodes.conf"), cfg)
			switch {
			case errors.Is(err, nodedb.ErrExists):
				fmt.Fprintf(a.stdout, "%s exists: left as it is\n", a.path("nodes.conf"))
			case err != nil:
				return err
			default:
				fmt.Fprintf(a.stdout, "created %s with the default profile\n", a.path("nodes.conf"))
			}
			return nil
		},
	}
}

// writeDefaultConfig writes a commented wwboot.conf unless one exists, and
// reports whether it did.
func writeDefaultConfig(path string) (bool, error) {
	if _, err := os.Stat(path); err == nil {
		return false, nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return false, nil
		}
		return false, fmt.Errorf("init: %w", err)
	}
	if _, err := f.WriteString(defaultConfigText); err != nil {
		f.Close()
		return false, fmt.Errorf("init: %w", err)
	}
	return true, f.Close()
}
