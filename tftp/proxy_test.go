package tftp

import (
	"encoding/binary"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision/netlab"
)

// lossyProxy relays TFTP between clients and a server, dropping a share of
// the DATA, ACK and OACK datagrams in both directions (requests and errors
// always pass). It follows TFTP's transfer IDs: for every server port that
// answers, the client sees a proxy port of its own. All its sockets live in
// one namespace.
type lossyProxy struct {
	ns      *netlab.NS
	front   *net.UDPConn
	server  *net.UDPAddr
	loss    float64
	dropped atomic.Int64

	mu       sync.Mutex
	rng      *rand.Rand
	sessions map[string]*proxySession
	conns    []*net.UDPConn
}

type proxySession struct {
	client *net.UDPAddr
	up     *net.UDPConn // proxy ↔ server
	mu     sync.Mutex
	downs  map[int]*net.UDPConn // server transfer port → proxy ↔ client
}

func (l *lab) startLossyProxy(t *testing.T, listen, server string, loss float64) *lossyProxy {
	t.Helper()
	p := &lossyProxy{ns: l.srv, loss: loss, rng: rand.New(rand.NewPCG(1, 2)), sessions: map[string]*proxySession{}}
	var err error
	p.server, err = net.ResolveUDPAddr("udp4", server)
	require.NoError(t, err)
	p.front = p.listen(t, listen)
	t.Cleanup(func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	go p.frontLoop(t)
	return p
}

func (p *lossyProxy) listen(t *testing.T, addr string) *net.UDPConn {
	var c *net.UDPConn
	err := p.ns.Do(func() error {
		a, err := net.ResolveUDPAddr("udp4", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp4", a)
		return err
	})
	if err != nil {
		t.Errorf("proxy listen %s: %v", addr, err)
		return nil
	}
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
	return c
}

func (p *lossyProxy) drop(pkt []byte) bool {
	if len(pkt) < 2 {
		return false
	}
	switch binary.BigEndian.Uint16(pkt) {
	case 3, 4, 6: // DATA, ACK, OACK
	default:
		return false
	}
	p.mu.Lock()
	d := p.rng.Float64() < p.loss
	p.mu.Unlock()
	if d {
		p.dropped.Add(1)
	}
	return d
}

func (p *lossyProxy) frontLoop(t *testing.T) {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.front.ReadFromUDP(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		s := p.sessions[from.String()]
		p.mu.Unlock()
		if s == nil {
			s = &proxySession{client: from, downs: map[int]*net.UDPConn{}}
			s.up = p.listen(t, p.server.IP.String()+":0")
			if s.up == nil {
				return
			}
			p.mu.Lock()
			p.sessions[from.String()] = s
			p.mu.Unlock()
			go p.upLoop(t, s)
		}
		if !p.drop(buf[:n]) {
			_, _ = s.up.WriteToUDP(buf[:n], p.server)
		}
	}
}

// upLoop relays what the server sends to the client, through a proxy port
// per server transfer port.
func (p *lossyProxy) upLoop(t *testing.T, s *proxySession) {
	buf := make([]byte, 65536)
	for {
		n, from, err := s.up.ReadFromUDP(buf)
		if err != nil {
			return
		}
		s.mu.Lock()
		down := s.downs[from.Port]
		s.mu.Unlock()
		if down == nil {
			down = p.listen(t, p.front.LocalAddr().(*net.UDPAddr).IP.String()+":0")
			if down == nil {
				return
			}
			s.mu.Lock()
			s.downs[from.Port] = down
			s.mu.Unlock()
			go p.downLoop(s, down, from)
		}
		if !p.drop(buf[:n]) {
			_, _ = down.WriteToUDP(buf[:n], s.client)
		}
	}
}

// downLoop relays what the client sends to one server transfer port.
func (p *lossyProxy) downLoop(s *proxySession, down *net.UDPConn, server *net.UDPAddr) {
	buf := make([]byte, 65536)
	for {
		n, _, err := down.ReadFromUDP(buf)
		if err != nil {
			return
		}
		if !p.drop(buf[:n]) {
			_, _ = s.up.WriteToUDP(buf[:n], server)
		}
	}
}
