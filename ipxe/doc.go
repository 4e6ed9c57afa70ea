// Package ipxe renders per-node iPXE scripts from Go text/template templates
// and locates iPXE binaries for each firmware architecture.
//
// A [Set] holds the templates: the built-in ones ("default" boots a node,
// "unknown" answers a MAC that is not in the inventory) and the site's own,
// read from a directory (ROOT/ipxe/NAME.ipxe) where a file overrides the
// built-in of the same name. Templates are parsed once; [Set.Render] only
// executes them, so a provisioning server can answer tens of thousands of
// script requests a second. [Set.Reload] re-reads the directory when the
// caller decides (an inventory change, SIGHUP).
//
// The caller fills a [Data] for the node; the package does not import the
// inventory. Data carries Warewulf's template variables (.Id, .Fqdn, .Hwaddr,
// .Ipaddr, .Port, .Authority, .KernelArgs, .ImageName, .ContainerName,
// .KernelVersion, .KernelOverride, .Tags, .NetDevs, ...) under the same names
// and meanings, so a Warewulf iPXE template renders unchanged, plus wwboot's
// ready-made asset URLs.
//
// [Locate] finds undionly.kpxe, snponly.efi and friends in the usual
// distribution directories, and [QEMUROM] finds QEMU's iPXE NIC option ROMs.
//
// [RouterAdvertiser] answers IPv6 router solicitations on the provisioning
// network. iPXE configures IPv4 (DHCP) and IPv6 (SLAAC) together and, in the
// builds distributions ship (Debian's is from 2019), waits for a router
// advertisement for about 15 seconds before it fetches anything when none
// comes. One advertisement that announces no router and no prefix ends the
// wait and changes nothing else on the link.
package ipxe
