package provision_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

// discardWriter is a ResponseWriter that throws the body away.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (d *discardWriter) WriteHeader(int)             {}

// BenchmarkScript measures the handler's cost of one iPXE script request
// with 10,000 nodes in the inventory, each request for another node (no
// network: see bench/provision/run.sh for requests per second over HTTP).
func BenchmarkScript(b *testing.B) {
	const n = 10000
	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": {Kernel: &nodedb.Kernel{Args: []string{"quiet", "crashkernel=no"}}}},
		Nodes:        map[string]*nodedb.Record{},
	}
	for i := 1; i <= n; i++ {
		cfg.Nodes[fmt.Sprintf("n%05d", i)] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "img",
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: fmt.Sprintf("52:54:00:00:%02x:%02x", i>>8, i&0xff),
				Ipaddr: fmt.Sprintf("10.0.%d.%d", i>>8, i&0xff)}}}
	}
	inv, err := nodedb.NewMemoryStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	h, err := provision.NewHandler(provision.Options{Inventory: inv, BaseURL: "http://10.0.0.1:9873"})
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*http.Request, n)
	for i := range reqs {
		reqs[i] = httptest.NewRequest(http.MethodGet, fmt.Sprintf("/ipxe/52-54-00-00-%02x-%02x", (i+1)>>8, (i+1)&0xff), nil)
		reqs[i].RemoteAddr = "10.0.0.5:1234"
	}
	// Warm: every node's script rendered once (the first request of a node
	// executes its template; later ones are a cache hit).
	w0 := &discardWriter{h: http.Header{}}
	for _, r := range reqs {
		h.ServeHTTP(w0, r)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			i := next.Add(1) % n
			clear(w.h)
			h.ServeHTTP(w, reqs[i])
		}
	})
}
