package overlay

import (
	"fmt"
	"sort"
	"strings"

	"github.com/wwboot/wwboot/nodedb"
)

// MarkerPath is the end marker of every system overlay archive (path in the
// archive, no leading "/"): the renderer writes it as the last record, after
// every overlay file, so a node whose system overlay was unpacked only in
// part (the kernel stops unpacking at the first write error) has no marker.
// The wwinit overlay's /init checks it before it hands over to the image's
// init. It is a shell fragment setting three variables:
//
//	WWBOOT_MARK_NODE='n1'                            # the node it was rendered for
//	WWBOOT_MARK_HWADDRS='52:54:00:00:00:01 ...'      # every netdev hwaddr of the node, lower case, sorted
//	WWBOOT_MARK_FILES=41                             # cpio records before the marker (trailer excluded)
//
// An overlay file at this path is dropped: the marker is the renderer's.
const MarkerPath = "etc/wwboot/system-overlay.done"

// appendMarker returns recs followed by the end marker of node's system
// overlay (and the marker's parent directories when neither recs nor have
// holds them). before counts the records of the archive's earlier members.
// The marker's mtime is the newest mtime in recs, so that equal input
// gives equal bytes.
func appendMarker(recs []*record, have map[string]bool, before int, node *nodedb.Node) []*record {
	var mtime int64
	for _, r := range recs {
		mtime = max(mtime, r.mtime)
	}
	m := &record{path: MarkerPath, mode: sIFREG | 0o644, mtime: mtime}
	out := withParents(append(recs, m), have, nil, 0)
	m.data = markerData(node, before+len(out)-1)
	return out
}

// markerData is the marker's content for node with files records before it.
func markerData(node *nodedb.Node, files int) []byte {
	seen := map[string]bool{}
	var hws []string
	for _, nd := range node.NetDevs {
		if nd == nil || nd.Hwaddr == "" {
			continue
		}
		hw := strings.ToLower(nd.Hwaddr)
		if !seen[hw] {
			seen[hw] = true
			hws = append(hws, hw)
		}
	}
	sort.Strings(hws)
	return fmt.Appendf(nil, "# wwboot: end of the system overlay of node %s; /init checks it\nWWBOOT_MARK_NODE=%s\nWWBOOT_MARK_HWADDRS=%s\nWWBOOT_MARK_FILES=%d\n",
		strings.Map(printable, node.ID), ShellQuote(node.ID), ShellQuote(strings.Join(hws, " ")), files)
}

// printable keeps a comment on one line.
func printable(r rune) rune {
	if r < 0x20 || r == 0x7f {
		return '?'
	}
	return r
}
