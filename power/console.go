package power

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/bougou/go-ipmi/pkg/client"
	"github.com/bougou/go-ipmi/pkg/command/transport"
	"github.com/bougou/go-ipmi/pkg/types"
)

// Consoler is the optional capability of a BMC with a serial console, found
// by type assertion like http.Flusher. IPMI implements it (serial over LAN).
type Consoler interface {
	// Console copies the node's serial console to out and in to the node
	// until in ends, the escape sequence is typed, or ctx ends.
	Console(ctx context.Context, in io.Reader, out io.Writer) error
}

// DefaultEscapeChar starts the sequence that ends a console session
// (escape char then '.', at the start of a line), as ipmitool's sol activate.
const DefaultEscapeChar = '~'

// Console runs serial over LAN: an RMCP+ session (lanplus; IPMI 1.5 has no
// SOL), Activate Payload SOL instance 1, the stream, Deactivate Payload.
// Typing the escape character (nodes.conf escapechar, "~" by default) and '.'
// at the start of a line ends the session.
func (b *IPMI) Console(ctx context.Context, in io.Reader, out io.Writer) error {
	if b.cfg.Interface == "lan" {
		return fmt.Errorf("node console: serial over LAN needs IPMI 2.0; set ipmi interface lanplus (it is lan)")
	}
	esc := byte(DefaultEscapeChar)
	if b.cfg.EscapeChar != "" {
		esc = b.cfg.EscapeChar[0]
	}
	return b.session(ctx, "serial over LAN", func(c *client.Client) error {
		if _, err := c.ActivatePayload(ctx, &transport.ActivatePayloadRequest{
			PayloadType: types.PayloadTypeSOL, PayloadInstance: 1,
		}); err != nil {
			return fmt.Errorf("activate SOL payload: %w", err)
		}
		err := c.SOLStream(ctx, newEscapeReader(in, esc), out, &client.SOLStreamOptions{PollInterval: 50 * time.Millisecond})
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, derr := c.DeactivatePayload(dctx, &transport.DeactivatePayloadRequest{
			PayloadType: types.PayloadTypeSOL, PayloadInstance: 1,
		})
		if err != nil {
			return err
		}
		if derr != nil {
			return fmt.Errorf("deactivate SOL payload: %w", derr)
		}
		return nil
	})
}

// escapeReader passes input through until ESC '.' at the start of a line,
// which reads as the end of input. ESC followed by anything else passes both.
type escapeReader struct {
	r         *bufio.Reader
	esc       byte
	lineStart bool
	pending   []byte
}

func newEscapeReader(in io.Reader, esc byte) *escapeReader {
	return &escapeReader{r: bufio.NewReader(in), esc: esc, lineStart: true}
}

func (e *escapeReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if len(e.pending) > 0 {
		n := copy(p, e.pending)
		e.pending = e.pending[n:]
		return n, nil
	}
	c, err := e.r.ReadByte()
	if err != nil {
		return 0, err
	}
	if e.lineStart && c == e.esc {
		next, err := e.r.ReadByte()
		if errors.Is(err, io.EOF) {
			p[0] = c
			return 1, nil
		}
		if err != nil {
			return 0, err
		}
		if next == '.' {
			return 0, io.EOF
		}
		e.lineStart = next == '\r' || next == '\n'
		p[0] = c
		e.pending = []byte{next}
		return 1, nil
	}
	e.lineStart = c == '\r' || c == '\n'
	p[0] = c
	return 1, nil
}
