// Package nodedb is wwboot's node inventory: nodes, profiles with
// inheritance and network devices, read from and written to Warewulf's
// nodes.conf format unchanged.
//
// A [Config] is the file as written: raw records under nodeprofiles: and
// nodes:. A [DB] is an immutable snapshot built from it, holding every
// effective [Node] — the node's record merged over its expanded profiles —
// validated and indexed for O(1) lookups by name, hardware address and IP.
//
// Profiles merge as Warewulf documents: profiles expand recursively (a cycle
// is an error) and merge left to right, the node's own values last; a scalar
// set later wins; lists (overlays, kernel arguments, profiles) append, and
// an entry "~x" removes x; maps merge by key.
//
// Stores hold an inventory that changes: [FileStore] keeps it in a
// nodes.conf file, written atomically and safely under concurrent writers,
// and [MemoryStore] in memory. The boot path asks a [Lookup]; tools change
// the inventory through an [Updater].
package nodedb
