package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"strconv"
	"strings"
	"time"
)

// A minimal HTTP/1.1 client: one request per connection (each from its
// own privileged port, given back at once, or over TLS), bodies by
// Content-Length, chunked transfer coding or connection close. net/http's
// client would bring HTTP/2 and much more, which the agent does not need;
// TLS is crypto/tls around the dialed connection.

// response is what the server answered.
type response struct {
	code   int
	status string // "304 Not Modified"
	header textproto.MIMEHeader
	body   []byte
}

// request is one HTTP request to the server.
type request struct {
	method string
	path   string // with the query, e.g. /overlay/runtime/aa-bb?wait=300
	header map[string]string
	body   []byte
	limit  int64         // largest body accepted
	wait   time.Duration // how long the whole exchange may take
}

// splitURL checks a base URL (http://HOST[:PORT][/] or https://...) and
// returns the address to dial, the Host header and whether it is https.
func splitURL(base string) (addr, host string, secure bool, err error) {
	scheme, port := "http", "80"
	rest, ok := strings.CutPrefix(base, "http://")
	if !ok {
		if rest, ok = strings.CutPrefix(base, "https://"); ok {
			scheme, port, secure = "https", "443", true
		}
	}
	if !ok {
		return "", "", false, fmt.Errorf("server URL %q: write it as http://HOST:PORT (or https://HOST:PORT for the TLS channel)", base)
	}
	host = strings.TrimRight(rest, "/")
	if host == "" || strings.ContainsAny(host, "/?#@ ") {
		return "", "", false, fmt.Errorf("server URL %q: write it as %s://HOST:PORT", base, scheme)
	}
	addr = host
	if _, _, err := net.SplitHostPort(host); err != nil {
		addr = net.JoinHostPort(strings.Trim(host, "[]"), port)
	}
	return addr, host, secure, nil
}

// do sends req to the server at base over a connection from dial, inside
// TLS with tc when base is https.
func do(ctx context.Context, dial DialFunc, base string, tc *tls.Config, req request) (*response, error) {
	addr, host, secure, err := splitURL(base)
	if err != nil {
		return nil, err
	}
	if secure && tc == nil {
		return nil, fmt.Errorf("server URL %q: https is the agent's TLS channel (WWBOOT_TLS_URL); write the plain URL as http://HOST:PORT", base)
	}
	if req.wait > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, req.wait)
		defer cancel()
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// The context ends the exchange (AfterFunc below); the deadline, a
	// little later, is a backstop.
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl.Add(time.Second))
	}
	stop := context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if secure {
		tlc := tls.Client(c, tc)
		if err := tlc.HandshakeContext(ctx); err != nil {
			if ctx.Err() != nil {
				return nil, fmt.Errorf("%w (TLS handshake: %w)", ctx.Err(), err)
			}
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		c = tlc
	}
	resp, err := exchange(c, host, req)
	if err != nil && ctx.Err() != nil {
		return nil, fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return resp, err
}

func exchange(c net.Conn, host string, req request) (*response, error) {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: wwboot-agent\r\nConnection: close\r\n", req.method, req.path, host)
	for k, v := range req.header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	if req.body != nil {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(req.body))
	}
	b.WriteString("\r\n")
	b.Write(req.body)
	if _, err := c.Write(b.Bytes()); err != nil {
		return nil, err
	}
	br := bufio.NewReader(c)
	tp := textproto.NewReader(br)
	line, err := tp.ReadLine()
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	proto, status, ok := strings.Cut(line, " ")
	code, cerr := strconv.Atoi(strings.SplitN(status, " ", 2)[0])
	if !ok || !strings.HasPrefix(proto, "HTTP/1.") || cerr != nil {
		return nil, fmt.Errorf("malformed status line %q", line)
	}
	hdr, err := tp.ReadMIMEHeader()
	if err != nil {
		return nil, fmt.Errorf("reading the answer's header: %w", err)
	}
	resp := &response{code: code, status: status, header: hdr}
	if code == 204 || code == 304 || code/100 == 1 || req.method == "HEAD" {
		return resp, nil
	}
	limit := req.limit
	if limit <= 0 {
		limit = 1 << 20
	}
	var body io.Reader = br
	switch {
	case strings.EqualFold(hdr.Get("Transfer-Encoding"), "chunked"):
		body = &chunked{r: br}
	case hdr.Get("Content-Length") != "":
		n, err := strconv.ParseInt(hdr.Get("Content-Length"), 10, 64)
		if err != nil || n < 0 {
			return nil, fmt.Errorf("bad Content-Length %q", hdr.Get("Content-Length"))
		}
		if n > limit {
			return nil, fmt.Errorf("answer of %d bytes is larger than the %d the agent accepts", n, limit)
		}
		resp.body = make([]byte, n)
		if _, err := io.ReadFull(br, resp.body); err != nil {
			return nil, fmt.Errorf("reading the answer's body: %w", err)
		}
		return resp, nil
	}
	resp.body, err = io.ReadAll(io.LimitReader(body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer's body: %w", err)
	}
	if int64(len(resp.body)) > limit {
		return nil, fmt.Errorf("answer larger than the %d bytes the agent accepts", limit)
	}
	return resp, nil
}

// chunked decodes the chunked transfer coding (RFC 9112 section 7.1).
type chunked struct {
	r    *bufio.Reader
	left int64 // bytes left in the current chunk
	done bool
}

func (c *chunked) Read(p []byte) (int, error) {
	if c.done {
		return 0, io.EOF
	}
	if c.left == 0 {
		line, err := c.r.ReadString('\n')
		if err != nil {
			return 0, io.ErrUnexpectedEOF
		}
		sz, _, _ := strings.Cut(strings.TrimSpace(line), ";")
		n, err := strconv.ParseInt(sz, 16, 64)
		if err != nil || n < 0 {
			return 0, errors.New("malformed chunk size")
		}
		if n == 0 {
			c.done = true
			return 0, io.EOF
		}
		c.left = n
	}
	if int64(len(p)) > c.left {
		p = p[:c.left]
	}
	n, err := c.r.Read(p)
	c.left -= int64(n)
	if c.left == 0 && err == nil {
		if crlf, err := c.r.ReadString('\n'); err != nil || strings.TrimSpace(crlf) != "" {
			return n, errors.New("malformed chunk end")
		}
	}
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}
