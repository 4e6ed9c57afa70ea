// Package wwboot is stateless cluster provisioning as an embeddable library.
//
// A stateless node installs nothing. It powers on, boots over the network
// (PXE → iPXE → HTTP) straight into an operating-system image held in its
// RAM, and receives its per-node files — hostname, network configuration,
// keys — as overlays rendered from the inventory. Every reboot makes it
// identical to its neighbours, so the cluster is administered as one unit.
//
// The packages compose along the boot path and each stands on its own:
//
//   - [github.com/wwboot/wwboot/nodedb]: the inventory — nodes, profiles
//     with inheritance, network devices — in Warewulf's nodes.conf format.
//   - [github.com/wwboot/wwboot/image]: root trees into reproducible,
//     compressed newc cpio images in a content-addressed store.
//   - [github.com/wwboot/wwboot/overlay]: per-node files rendered from
//     Warewulf-compatible .ww templates, packed as cpio.
//   - [github.com/wwboot/wwboot/dhcp], [github.com/wwboot/wwboot/tftp] and
//     [github.com/wwboot/wwboot/ipxe]: the boot protocols.
//   - [github.com/wwboot/wwboot/provision]: the HTTP provisioning service and
//     the Server that wires everything together through small interfaces.
//
// A program that embeds wwboot loads an inventory and asks it about the
// machine that is booting:
//
//	db, err := nodedb.Open(ctx, "/var/lib/wwboot/nodes.conf")
//	if err != nil {
//		return err
//	}
//	node, err := db.NodeByHW(ctx, mac)
//
// The reference binary cmd/wwboot adds flags, a configuration file and
// logging, and no logic of its own.
package wwboot
