package overlay_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
)

// Render a node's system overlay archive with built-in overlays and list
// what it holds. A provisioning server hands the archive to
// http.ServeContent(w, req, "system.cpio.gz", a.ModTime, a.NewReader()).
func Example() {
	ctx := context.Background()
	store, err := nodedb.NewMemoryStore(&nodedb.Config{Nodes: map[string]*nodedb.Record{
		"n1": {NetDevs: map[string]*nodedb.NetDev{"default": {Device: "eth0", Ipaddr: "10.0.0.11", Netmask: "255.255.255.0"}}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	db, _ := store.Snapshot(ctx)
	keys, _ := os.MkdirTemp("", "wwboot-keys-")
	defer os.RemoveAll(keys)

	r, err := overlay.New(overlay.Options{
		Server:        overlay.ServerInfo{Ipaddr: "10.0.0.1", Netmask: "255.255.255.0"},
		KeyDir:        keys,                                    // SSH host keys, one set per node, kept here
		DefaultSystem: []string{"wwinit", "hostname", "hosts"}, // for nodes without a system overlay list
	})
	if err != nil {
		log.Fatal(err)
	}
	node, _ := db.Node("n1")
	a, err := r.Render(ctx, db, node, overlay.System)
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range a.Entries() {
		fmt.Println(e.Mode, "/"+e.Path)
	}
	fmt.Println("size is a multiple of 4:", a.Size()%4 == 0)
	// Output:
	// drwxr-xr-x /etc
	// drwxr-xr-x /etc/wwboot
	// -rwxr-xr-x /etc/wwboot/restore-xattrs
	// -rwxr-xr-x /init
	// -rw-r--r-- /etc/hosts
	// -rw-r--r-- /etc/wwboot/node.conf
	// -rw-r--r-- /etc/hostname
	// -rw-r--r-- /etc/wwboot/system-overlay.done
	// size is a multiple of 4: true
}

// Templates are Go text/template with Warewulf's data and functions.
func ExampleRenderer_RenderFile() {
	dir, _ := os.MkdirTemp("", "wwboot-site-")
	defer os.RemoveAll(dir)
	os.MkdirAll(dir+"/motd/rootfs/etc", 0o755)
	os.WriteFile(dir+"/motd/rootfs/etc/motd.ww", []byte(
		"{{ .Id }} in {{ .ClusterName }}, {{ .NetDevs.default.IpCIDR }}, tag {{ .Tags.rack }}, missing {{ .Tags.nope }}\n"), 0o644)
	store, _ := nodedb.NewMemoryStore(&nodedb.Config{Nodes: map[string]*nodedb.Record{
		"n1": {ClusterName: "lab", Tags: map[string]string{"rack": "r7"},
			NetDevs: map[string]*nodedb.NetDev{"default": {Ipaddr: "10.0.0.11", Netmask: "255.255.255.0"}}},
	}})
	db, _ := store.Snapshot(context.Background())
	r, _ := overlay.New(overlay.Options{SiteDir: dir})
	node, _ := db.Node("n1")
	files, err := r.RenderFile(context.Background(), db, node, "motd", "etc/motd.ww")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("/%s: %s", files[0].Path, files[0].Data)
	// Output:
	// /etc/motd: n1 in lab, 10.0.0.11/24, tag r7, missing <no value>
}
