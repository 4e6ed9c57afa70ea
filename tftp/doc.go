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
// Supported options: tsize and blksize (RFC 2348, 2349); block numbers roll
// over past 65535 so files beyond 32 MB go out at blksize 512. Not supported
// (pin/tftp lacks them): timeout and windowsize (RFC 7440).
package tftp
