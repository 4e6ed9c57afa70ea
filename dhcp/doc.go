// Package dhcp is wwboot's DHCPv4 server for network boot.
//
// It has two layers, like net/http:
//
//   - [Policy] is a [Handler]: one DHCP request in, one reply (or none) out,
//     no sockets. It answers in full mode (addresses from the inventory, an
//     optional dynamic [Pool] for unknown MACs) or in proxy mode (PXE boot
//     information only, beside a site's own DHCP server), picks the boot file
//     per firmware architecture (RFC 4578 option 93), breaks the iPXE loop by
//     handing iPXE clients the HTTP URL of their script, and answers UEFI HTTP
//     Boot clients with an http URL.
//   - [Server] reads packets from sockets bound to named interfaces, runs the
//     handler on a bounded pool of workers and delivers the reply the way RFC
//     2131 section 4.1 says: to the relay (giaddr:67), to ciaddr, by unicast to
//     the offered address with the client's MAC put in the ARP table, or by
//     broadcast.
//
// IPoIB clients (htype 32, RFC 4390) are served too: they are looked up by
// their port GUID, taken from the client identifier or an 8-byte chaddr
// ([ClientHW], [GUIDFromClientID]), and answered with hlen 0, a zero chaddr
// and the broadcast flag. Every request not answered is counted by reason
// and logged with it at debug level ("dhcp: dropped").
//
// The inventory is reached through the small [Hosts] interface (and the
// optional [Discoverer] and [Reserver]); package dhcp imports no inventory
// package. Counters are Prometheus metrics registered on a registry the
// caller hands in ([NewMetrics]).
package dhcp
