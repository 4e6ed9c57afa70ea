//go:build !linux

package tftp

import "syscall"

// enablePacketInfo is a no-op where IP_PKTINFO is not known; pin/tftp still
// enables control messages itself when Serve starts.
func enablePacketInfo(string, syscall.RawConn) error { return nil }
