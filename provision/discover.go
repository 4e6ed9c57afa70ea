package provision

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/nodedb"
)

// Discovery hands unknown machines to nodes marked discoverable, as
// Warewulf's discovery does: the first discoverable node (by name) that has
// a network device without a hardware address takes the MAC on that device
// (its primary one if that is free), stops being discoverable, and the
// inventory is saved. It implements dhcp.Discoverer.
//
// It is race-free because the choice is made inside Store.Update, which
// runs under the inventory's lock against its current contents: two MACs
// discovered at once take two nodes, and a MAC that asks again finds the
// node it already took.
//
// An unknown MAC costs no work that grows with the inventory unless a
// discoverable node with a free device is there to take it: which nodes
// can is worked out once per inventory snapshot, not per request, and only
// one discovery writes the inventory at a time (the others wait for it or
// for their context). A Discovery must not be copied after first use.
type Discovery struct {
	Store nodedb.Store
	// Hosts answers for the node once it has the MAC (DHCPHosts(Store) if nil).
	Hosts dhcp.Hosts

	cand atomic.Pointer[candidates] // discoverable nodes of the last snapshot seen
	once sync.Once
	sem  chan struct{} // one discovery writes at a time
}

// candidates are the names of the nodes of one snapshot that can take a MAC.
type candidates struct {
	db    *nodedb.DB
	names []string
}

// open reports whether the current snapshot has a node that can take a
// MAC. It walks the inventory only when the snapshot changed.
func (d *Discovery) open(ctx context.Context) (bool, error) {
	db, err := d.Store.Snapshot(ctx)
	if err != nil {
		return false, err
	}
	if c := d.cand.Load(); c != nil && c.db == db {
		return len(c.names) > 0, nil
	}
	c := &candidates{db: db}
	for _, n := range db.Nodes() {
		if on, _ := nodedb.ParseBool(n.Discoverable); on && freeNetDev(n) != "" {
			c.names = append(c.names, n.ID)
		}
	}
	d.cand.Store(c)
	return len(c.names) > 0, nil
}

// Discover assigns mac to a discoverable node and returns its DHCP host.
func (d *Discovery) Discover(ctx context.Context, mac net.HardwareAddr) (dhcp.Host, error) {
	hosts := d.Hosts
	if hosts == nil {
		hosts = DHCPHosts(d.Store)
	}
	if h, err := hosts.HostByHW(ctx, mac); err == nil { // already taken, by us or by hand
		return h, nil
	}
	if ok, err := d.open(ctx); err != nil {
		return dhcp.Host{}, fmt.Errorf("discover %s: %w", mac, err)
	} else if !ok {
		return dhcp.Host{}, fmt.Errorf("%s: no discoverable node left: %w", mac, dhcp.ErrUnknownHost)
	}
	d.once.Do(func() { d.sem = make(chan struct{}, 1) })
	select {
	case d.sem <- struct{}{}:
		defer func() { <-d.sem }()
	case <-ctx.Done():
		return dhcp.Host{}, fmt.Errorf("discover %s: waiting for another discovery: %w", mac, ctx.Err())
	}
	if h, err := hosts.HostByHW(ctx, mac); err == nil { // taken while we waited
		return h, nil
	}
	var took string
	err := d.Store.Update(ctx, func(c *nodedb.Config) error {
		took = ""
		db, err := nodedb.New(c)
		if err != nil {
			return err
		}
		if n, err := db.NodeByHW(ctx, mac); err == nil {
			took = n.ID // another process assigned it meanwhile
			return nil
		}
		for _, name := range db.Names() {
			n, _ := db.Node(name)
			if on, _ := nodedb.ParseBool(n.Discoverable); !on {
				continue
			}
			dev := freeNetDev(n)
			if dev == "" {
				continue
			}
			rec := c.Nodes[name]
			if rec.NetDevs == nil {
				rec.NetDevs = map[string]*nodedb.NetDev{}
			}
			nd := rec.NetDevs[dev]
			if nd == nil {
				nd = &nodedb.NetDev{}
				rec.NetDevs[dev] = nd
			}
			nd.Hwaddr = mac.String()
			rec.Discoverable = "false"
			took = name
			return nil
		}
		return errNoDiscoverable
	})
	if errors.Is(err, errNoDiscoverable) {
		return dhcp.Host{}, fmt.Errorf("%s: no discoverable node left: %w", mac, dhcp.ErrUnknownHost)
	}
	if err != nil {
		return dhcp.Host{}, fmt.Errorf("discover %s: %w", mac, err)
	}
	h, err := hosts.HostByHW(ctx, mac)
	if err != nil {
		return dhcp.Host{}, fmt.Errorf("discover %s: node %s took it but %w", mac, took, err)
	}
	return h, nil
}

var errNoDiscoverable = errors.New("no discoverable node")

// freeNetDev names the effective node's device that can take a discovered
// MAC: the primary one if it has no hardware address, else the first such
// device by name, else "" (or the primary name when the node has no devices
// at all, so that discovery creates it).
func freeNetDev(n *nodedb.Node) string {
	if len(n.NetDevs) == 0 {
		if n.PrimaryNetDev != "" {
			return n.PrimaryNetDev
		}
		return "default"
	}
	if nd := n.PrimaryNetDevice(); nd != nil && nd.Hwaddr == "" {
		return n.Primary
	}
	names := make([]string, 0, len(n.NetDevs))
	for name := range n.NetDevs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if n.NetDevs[name].Hwaddr == "" {
			return name
		}
	}
	return ""
}
