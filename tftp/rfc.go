package tftp

import (
	"encoding/binary"
	"errors"
	"net"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"unsafe"
)

// TFTP error codes (RFC 1350 section 5, RFC 2347 for 8).
const (
	codeNotDefined      = 0 // see the message
	codeNotFound        = 1
	codeAccessViolation = 2
	codeIllegalOp       = 4
)

// codedError is an error sent to the client with its TFTP error code.
type codedError struct {
	code uint16
	msg  string
}

func (e *codedError) Error() string { return e.msg }

// errorCode is the RFC 1350 code for err; 0 (not defined) for errors the
// server did not classify.
func errorCode(err error) uint16 {
	var ce *codedError
	if errors.As(err, &ce) {
		return ce.code
	}
	return codeNotDefined
}

// Option limits (RFC 2348 blksize, RFC 2349 timeout).
const (
	minBlksizeOption = 8
	maxBlksizeOption = 65464
)

// negotiate rewrites the options of a pending pin/tftp transfer before
// pin/tftp answers them, so that the answer follows RFC 2347-2349:
//
//   - Option names are case-insensitive (RFC 2347); pin/tftp only knows the
//     lower-case spelling, so names are lower-cased.
//   - blksize (RFC 2348) must be a decimal number of 8..65464. A larger
//     value is lowered to 65464 (the server may always answer with less;
//     tftp-hpa does the same); anything else is dropped. pin/tftp then caps
//     it at the path MTU, and declines values below 512: the client then
//     uses 512-byte blocks, as RFC 2348 allows.
//   - tsize (RFC 2349) must be a decimal number; on a read request the
//     client sends 0 and the server answers with the file's size (octet
//     mode; in netascii the size on the wire is unknown and the option is
//     declined). Anything else is dropped.
//   - timeout (RFC 2349) and every other option are not acknowledged: RFC
//     2347 lets a server ignore options, and the client then keeps its own
//     defaults. pin/tftp cannot put timeout into its OACK, so the server's
//     retransmission timer (Server.Timeout with backoff) applies.
//
// No option understood means no OACK: the transfer starts with DATA block 1.
// It reports false when the transfer's options cannot be reached (a pin/tftp
// whose layout this code does not know); pin/tftp's own handling applies then.
func negotiate(transfer any) bool {
	opts, ok := pinField(transfer, "opts")
	if !ok || opts.Kind() != reflect.Map || opts.Type().Key().Kind() != reflect.String || opts.Type().Elem().Kind() != reflect.String {
		return false
	}
	if opts.IsNil() {
		return true
	}
	// The same option spelled twice ("blksize", "BLKSIZE"): the spelling
	// that sorts first wins, so the answer does not depend on map order.
	keys := opts.MapKeys()
	sort.Slice(keys, func(i, j int) bool { return keys[i].String() > keys[j].String() })
	in := map[string]string{}
	for _, k := range keys {
		in[strings.ToLower(k.String())] = opts.MapIndex(k).String()
	}
	opts.Clear()
	set := func(k, v string) {
		opts.SetMapIndex(reflect.ValueOf(k).Convert(opts.Type().Key()), reflect.ValueOf(v).Convert(opts.Type().Elem()))
	}
	if v, ok := in["blksize"]; ok {
		if n, err := strconv.ParseUint(v, 10, 32); err == nil && n >= minBlksizeOption {
			set("blksize", strconv.FormatUint(min(n, maxBlksizeOption), 10))
		}
	}
	if v, ok := in["tsize"]; ok {
		if _, err := strconv.ParseUint(v, 10, 63); err == nil {
			set("tsize", v)
		}
	}
	return true
}

// sendError answers a pending pin/tftp transfer with an ERROR packet that
// carries err's RFC 1350 code (pin/tftp always sends code 1, "file not
// found") from the transfer's own port, and closes the transfer, so that
// pin/tftp sends nothing more. It reports false when it could not (a
// transfer already closed, or a pin/tftp layout this code does not know);
// the caller then lets pin/tftp send its own error.
func sendError(transfer any, err error) bool {
	connField, ok := pinField(transfer, "conn")
	if !ok || connField.Kind() != reflect.Interface || connField.IsNil() {
		return false
	}
	addrField, ok := pinField(transfer, "addr")
	if !ok || addrField.Type() != reflect.TypeFor[*net.UDPAddr]() || addrField.IsNil() {
		return false
	}
	// In pin/tftp's multi-port mode (the one Serve uses) the connection is
	// a *connConnection{conn *net.UDPConn}: the transfer's own socket.
	cc := connField.Elem()
	if cc.Kind() != reflect.Pointer || cc.IsNil() || cc.Elem().Kind() != reflect.Struct {
		return false
	}
	uf := cc.Elem().FieldByName("conn")
	if !uf.IsValid() || uf.Type() != reflect.TypeFor[*net.UDPConn]() || uf.IsNil() {
		return false
	}
	udp := reflect.NewAt(uf.Type(), unsafe.Pointer(uf.UnsafeAddr())).Elem().Interface().(*net.UDPConn)
	to := reflect.NewAt(addrField.Type(), unsafe.Pointer(addrField.UnsafeAddr())).Elem().Interface().(*net.UDPAddr)

	msg := err.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	pkt := make([]byte, 4, 5+len(msg))
	binary.BigEndian.PutUint16(pkt, 5)
	binary.BigEndian.PutUint16(pkt[2:], errorCode(err))
	pkt = append(append(pkt, msg...), 0)
	_, werr := udp.WriteToUDP(pkt, to)
	udp.Close()
	// pin/tftp's abort does nothing on a transfer whose connection is nil.
	connField.Set(reflect.Zero(connField.Type()))
	return werr == nil
}

// pinField returns a settable view of the unexported field name of the
// pin/tftp transfer behind transfer (a *sender or *receiver of pin/tftp
// v3.1.0, as go.mod pins it). TestPinInternals fails if an upgrade moves
// the fields.
func pinField(transfer any, name string) (reflect.Value, bool) {
	v := reflect.ValueOf(transfer)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return reflect.Value{}, false
	}
	if v.Elem().Type().PkgPath() != "github.com/pin/tftp/v3" {
		return reflect.Value{}, false
	}
	f := v.Elem().FieldByName(name)
	if !f.IsValid() {
		return reflect.Value{}, false
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem(), true
}
