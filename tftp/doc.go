// Package tftp serves files from an [fs.FS] over read-only TFTP for network
// boot: iPXE binaries to PXE firmware, and anything else a boot chain asks
// for before it can speak HTTP.
//
// It wraps github.com/pin/tftp/v3 (v3.1.0) and adds what a boot server needs
// around it: path safety (pin/tftp has no root jail), refusal of writes and of
// unknown transfer modes, a block size clamped to the interface MTU, packet
// info enabled before the first request can arrive, bounded concurrency,
// graceful shutdown, log/slog logging and Prometheus metrics.
//
// The shape follows net/http: a [Server] with fields, [Server.Serve] on a
// socket the caller opened (see [ListenPacket]), [Server.ListenAndServe],
// and [Server.Shutdown]. Per-client files are an optional capability of the
// served file system, found by type assertion ([RequestFS]), the way
// http.Flusher is.
//
// Names: a leading slash names the root of the served tree, as for tftp-hpa
// -s and dnsmasq ("/warewulf/ipxe-snponly-x86_64.efi"); see [CleanPath].
//
// Protocol: RFC 1350 error codes (1 file not found, 2 access violation, 4
// illegal operation, 0 otherwise; pin/tftp alone sends 1 for all), RFC 2347
// option names case-insensitive, unknown options ignored and an OACK only
// for options understood; blksize 8..65464 (RFC 2348; above is lowered,
// 8..511 declined so the client keeps 512, the rest capped at the path MTU);
// tsize (RFC 2349) answered with the size on a read in octet mode. Block
// numbers roll over past 65535 so files beyond 32 MB go out at blksize 512.
// Not acknowledged (pin/tftp cannot put them into its OACK; RFC 2347 lets a
// server ignore options): timeout (RFC 2349) and windowsize (RFC 7440).
package tftp
