// Package nodedb is wwboot's node inventory: nodes, profiles with
// inheritance and network devices, read from and written to Warewulf's
// nodes.conf format unchanged.
//
// A [Config] is the file as written: raw records under nodeprofiles: and
// nodes:. A [DB] is an immutable snapshot built from it, holding every
// effective [Node] — the node's record merged over its expanded profiles —
// validated and indexed for O(1) lookups by name, hardware address and IP.
//
// Profiles merge as Warewulf 4.7 merges (internal/pkg/node/mergo.go):
// profiles expand recursively, each after the profiles it names, a repeat
// skipped (so a cycle ends there), and merge left to right, the node's own
// values last; a scalar set later wins; lists (overlays, kernel arguments,
// profiles) append, and an entry "~x" anywhere removes x wherever it
// stands, in the profile chain too; maps merge by key, resources deeply
// (lists appended). The effective node's Profiles is its own list; Chain
// is the expansion. Discoverable and asset key are not inherited.
//
// Loading never refuses what Warewulf 4.7 loads: unknown keys (kept, and
// written back), an address two nodes share (lookups of it fail with
// ErrAmbiguous), missing profiles, profile cycles, a primary network naming
// no device, odd IPv6 values. They are [DB.Findings], each with file, line,
// node and field; a FileStore logs them once per loaded version, and an
// Update that adds one is refused.
//
// Stores hold an inventory that changes: [FileStore] keeps it in a
// nodes.conf file, written atomically and safely under concurrent writers,
// and [MemoryStore] in memory. The boot path asks a [Lookup]; tools change
// the inventory through an [Updater].
package nodedb
