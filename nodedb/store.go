package nodedb

import (
	"context"
	"net"
	"net/netip"
	"sync"
)

// Lookup is the read side the boot path needs: find the node that is
// asking. DB and every store satisfy it, and so can a scheduler's own
// database.
type Lookup interface {
	NodeByHW(ctx context.Context, hw net.HardwareAddr) (*Node, error)
	NodeByIP(ctx context.Context, ip netip.Addr) (*Node, error)
	NodeByName(ctx context.Context, name string) (*Node, error)
}

// Updater is the write side tools need. Update calls fn with a private copy
// of the current inventory; when fn returns nil and the result validates,
// the change is stored atomically. fn may run more than once and must only
// change the Config it is given.
type Updater interface {
	Update(ctx context.Context, fn func(*Config) error) error
}

// Store is an inventory that can be read, snapshotted and changed.
type Store interface {
	Lookup
	Updater
	// Snapshot returns the current inventory. It is cheap; callers that
	// need several consistent answers take one snapshot and ask it.
	Snapshot(ctx context.Context) (*DB, error)
}

// MemoryStore is an inventory held only in memory, for tests and for
// programs that build their inventory themselves.
type MemoryStore struct {
	mu sync.RWMutex
	db *DB
}

// NewMemoryStore returns a store holding cfg (nil means empty), validated.
func NewMemoryStore(cfg *Config) (*MemoryStore, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	db, err := New(cloneConfig(normalize(cfg)))
	if err != nil {
		return nil, err
	}
	return &MemoryStore{db: db}, nil
}

// Snapshot returns the current inventory.
func (m *MemoryStore) Snapshot(context.Context) (*DB, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.db, nil
}

// Update applies fn to a copy of the inventory and keeps the result if it
// validates.
func (m *MemoryStore) Update(_ context.Context, fn func(*Config) error) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cfg := cloneConfig(m.db.cfg)
	if err := fn(cfg); err != nil {
		return err
	}
	db, err := New(cfg)
	if err != nil {
		return err
	}
	if err := refuseNew(m.db, db); err != nil {
		return err
	}
	m.db = db
	return nil
}

// NodeByHW looks a node up by hardware address in the current snapshot.
func (m *MemoryStore) NodeByHW(ctx context.Context, hw net.HardwareAddr) (*Node, error) {
	db, _ := m.Snapshot(ctx)
	return db.NodeByHW(ctx, hw)
}

// NodeByIP looks a node up by IPv4 address in the current snapshot.
func (m *MemoryStore) NodeByIP(ctx context.Context, ip netip.Addr) (*Node, error) {
	db, _ := m.Snapshot(ctx)
	return db.NodeByIP(ctx, ip)
}

// NodeByName looks a node up by name in the current snapshot.
func (m *MemoryStore) NodeByName(ctx context.Context, name string) (*Node, error) {
	db, _ := m.Snapshot(ctx)
	return db.NodeByName(ctx, name)
}
