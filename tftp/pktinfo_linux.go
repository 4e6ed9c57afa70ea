package tftp

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// enablePacketInfo asks the kernel to attach the arrival interface and
// destination address to every datagram on the socket. It runs before bind,
// so no request can be queued without them.
func enablePacketInfo(network string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		switch network {
		case "udp4":
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		case "udp6":
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_RECVPKTINFO, 1)
			// A dual-stack socket also receives IPv4; it reports those
			// through IP_PKTINFO. Failure means an IPv6-only socket.
			_ = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_PKTINFO, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}
