// Package overlay renders Warewulf-style overlays per node and packs them as
// gzip-compressed newc cpio archives, ready to be loaded as initrds beside
// the node's image.
//
// An overlay is a directory NAME/rootfs/... looked up first in the site
// directory (Options.SiteDir, usually ROOT/overlays) and then among the
// overlays built into this package (wwinit, wwclient, hostname, hosts,
// udev.netname, systemd.netname, ifupdown, NetworkManager,
// systemd-networkd, fstab, resolv, machine-id, ssh.host_keys,
// ssh.authorized_keys); a site overlay of the same name wins as a whole.
// wwclient delivers the node agent (ServerInfo.Paths.Agent, through the
// AgentBinary function) with its systemd unit, and the public cluster CA
// certificate (ServerInfo.Paths.CACert, through ClusterCA).
// Files ending in ".ww" are Go text/template templates rendered for the node
// (data: TemplateData; functions: Warewulf's Include, IncludeFrom,
// IncludeBlock, file, softlink, ImportLink, readlink, basename, inc, dec,
// abort, nobackup, UniqueField, SystemdEscape, SystemdEscapePath plus
// sprig's text functions) and written without the suffix; other files and
// symlinks are copied. Mode, owner and group come from the source file.
//
// Reads stay in their tree: IncludeFrom reads an image's file, and Include
// and IncludeBlock a relative path of the site tree (Paths.Sysconfdir),
// resolving the path and every symbolic link inside that tree as chroot
// would (an absolute link names the tree's own file, ".." stops at its
// root), so an image's etc/passwd -> /etc/shadow yields the image's shadow,
// never the server's. An absolute Include path is the server file the
// template's author named, as in Warewulf. Only regular files up to 64 MiB
// are read (a FIFO or a device in an image would block or never end).
//
// # Layering
//
// A node's system (or runtime) archive holds the overlays of its system (or
// runtime) overlay list. When two overlays provide the same path, the one
// later in the list wins, as in Warewulf, where later overlays are written
// over earlier ones; within one overlay a file produced later (by the file
// function) wins. A file where the tree needs a directory (one overlay's
// file where another has a directory, or a template's file name that is a
// directory, like its own) is an error, not a second entry. Every path
// appears exactly once in the archive, so the
// "first of duplicate names wins" rule of u-root and the "last wins" rule of
// the kernel agree. Directories come before their contents.
//
// # Archive layout and sharing
//
// An archive is a concatenation of gzip members (valid gzip, which gzip -d,
// Go and the kernel read as one stream), padded with zero bytes to a
// multiple of 4 so that another initrd can follow it:
//
//  1. the static member: every directory and every plain file and symlink of
//     the layered overlays, compressed once per overlay list and shared by
//     every node using that list;
//  2. the shared member: the output of templates that read nothing of the
//     node (detected by walking the template's parse tree), compressed once
//     per overlay list and inventory (when a template ranges over .AllNodes)
//     and shared by every node; /etc/hosts of a 10,000-node cluster is
//     compressed once, not 10,000 times;
//  3. the node's own member: the output of the templates that read the node,
//     and the cpio trailer.
//
// # Caching
//
// Renderer.Render caches one archive per node and kind. The cache key covers
// the overlay files (content hashes, rechecked at most every
// Options.CheckInterval), the node's effective record, the inventory only
// when a template of the node's overlays uses .AllNodes (or passes the whole
// data to something the analysis cannot follow), the server settings, and
// the files templates read from the server (Include, host keys...), which
// are re-checked by size and modification time on every hit. Concurrent
// requests for the same archive render it once (singleflight).
//
// # Differences from Warewulf
//
// The file and softlink directives are carried by markers made of NUL
// bytes and a per-render random nonce, not by a text comment that a tag
// value could imitate. As in Warewulf 4.7, output switches to the new file
// exactly where file is called (text after the call on the same line goes
// to the new file; several calls on one line all count); text before the
// first file call is not written unless softlink made it a link. A relative
// name lands beside the template, an absolute one at that path of the
// overlay root; no name may leave the overlay root. nobackup is accepted and does nothing (an archive replaces
// files, it keeps no backups); abort writes no file. Include and IncludeBlock read a relative path
// below Paths.Sysconfdir/warewulf (never outside it) and an absolute one as
// it is; IncludeBlock of a missing file gives its stop string, as in
// Warewulf; Warewulf's keys/ssh_host_TYPE_key{,.pub} come from the
// cluster-wide key set (KeyDir/shared) when the file is not there.
// IgnitionJson gives the node's storage as an Ignition 3.1.0 config. Extensions:
// ShellQuote, SSHHostKey and SSHHostPubKey (this node's host keys, generated
// once per node under Options.KeyDir/nodes/NODE/), MachineID (likewise),
// the node methods .NetNames and .IfName (each network device's interface
// name and hardware address, see NetName), .NameServers and .SearchDomains
// (DNS from the inventory's tags), .Resolv and .Ssh.AuthorizedKeys.
//
// # Network interface names
//
// The NIC whose hardware address is a network device's gets the device's
// "device" field as its name, else the device's logical name when that can
// be an interface name, else one derived from it ("default" becomes
// "wwdefault"; see Node.NetNames). udev.netname (udev rules) and
// systemd.netname (.link files) rename it once udev runs; both also carry
// /etc/wwboot/netnames and the /init hook /etc/wwboot/init.d/10-netname,
// which renames before the image's init (and on images without udev).
// ifupdown configures that name; systemd-networkd and NetworkManager match
// the NIC by MAC.
//
// # Where things are kept
//
// Host keys and machine-id: Options.KeyDir/nodes/NODE/ssh_host_TYPE_key{,.pub}
// and machine-id (keys in Options.KeyDir/shared/ with SharedHostKeys, see
// ImportHostKeys); a directory changes as one unit (see hostKeys). Built archives (Build):
// Options.BuildDir/NODE/{system,runtime}.cpio.gz, see BuiltPath. The CLI
// uses ROOT/keys and ROOT/overlays-built.
//
// # The node console line
//
// The wwinit overlay renders /etc/wwboot/node.conf (shell variables: the
// node's name, primary device, address, init and root) and its /init prints
//
//	wwboot: node <hostname> address <ip>
//
// on the console before it hands over to the image's init, so a boot test
// (or an operator watching a serial console) can see which node came up with
// which address.
//
// # The end marker, and boots that stop
//
// Every system overlay archive ends with MarkerPath
// (/etc/wwboot/system-overlay.done: the node, its MACs, the number of records
// before it). The kernel stops unpacking at the first error (out of memory
// or tmpfs space: "Initramfs unpacking failed: write error") and still runs
// /init; wwinit's /init then finds no marker. It also checks that an
// interface carries one of the node's MACs. On either failure it prints what
// happened, the node and what to do through the kernel log (every console),
// reports `failed` with /usr/sbin/wwboot-agent when the image has it, and
// stops: no hand-over, no reboot loop (kernel argument
// wwboot.failreboot=SECONDS reboots instead). The script's header lists the
// kernel arguments it reads (wwinit.tmpfs.size, wwboot.nicwait,
// wwboot.maccheck).
package overlay
