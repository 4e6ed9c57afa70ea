package ipxe_test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"
	"text/template"

	"github.com/wwboot/wwboot/ipxe"
)

// BenchmarkRender renders the default script for one of 10,000 nodes per
// iteration, in parallel, the way the provisioning server does.
func BenchmarkRender(b *testing.B) {
	s, err := ipxe.New(ipxe.Options{})
	if err != nil {
		b.Fatal(err)
	}
	nodes := make([]*ipxe.Data, 10000)
	for i := range nodes {
		d := node()
		d.Id, d.Hostname, d.Fqdn = fmt.Sprintf("n%05d", i), "", ""
		d.Hwaddr = fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
		d.ScriptURL, d.KernelURL, d.ImageURL, d.SystemOverlayURL, d.RuntimeOverlayURL = "", "", "", "", ""
		d.Complete()
		nodes[i] = d
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var buf bytes.Buffer
		i := 0
		for pb.Next() {
			buf.Reset()
			if err := s.Render(&buf, "", nodes[i%len(nodes)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}

// BenchmarkParsePerRequest is what Warewulf's server does for each script
// request: read and parse the template file, then execute it. It is the
// baseline BenchmarkRender is compared with.
func BenchmarkParsePerRequest(b *testing.B) {
	src, err := os.ReadFile("templates/default.ipxe")
	if err != nil {
		b.Fatal(err)
	}
	path := b.TempDir() + "/default.ipxe"
	if err := os.WriteFile(path, src, 0o644); err != nil {
		b.Fatal(err)
	}
	d := node()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			t, err := template.ParseFiles(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := t.Execute(io.Discard, d); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkScript is Render behind Set.Script's per-Data cache: what a
// server answering repeated requests for the same 10,000 nodes pays.
func BenchmarkScript(b *testing.B) {
	s, err := ipxe.New(ipxe.Options{})
	if err != nil {
		b.Fatal(err)
	}
	nodes := make([]*ipxe.Data, 10000)
	for i := range nodes {
		d := &ipxe.Data{Id: fmt.Sprintf("n%05d", i), Ipaddr: "10.0.0.1", Port: "9873", ImageName: "debian12",
			Hwaddr: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff), KernelArgs: "quiet"}
		d.Complete()
		nodes[i] = d
		if _, err := s.Script("", d); err != nil { // warm: measure the hot path
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if _, err := s.Script("", nodes[i%len(nodes)]); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
