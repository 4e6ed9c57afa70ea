package ipxe_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"text/template"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// node returns completed data for a typical node.
func node() *ipxe.Data {
	d := &ipxe.Data{
		Id:         "n1",
		Cluster:    "c1",
		Hwaddr:     "52:54:00:12:34:01",
		NodeIpaddr: "10.0.0.11",
		Ipaddr:     "10.0.0.1",
		Port:       "9873",
		ImageName:  "debian12",
		KernelArgs: "console=ttyS0,115200 quiet crashkernel=no",
		Root:       "initramfs",
		Tags:       map[string]string{"rack": "r1"},
		NetDevs: map[string]*ipxe.NetDev{
			"default": {Device: "eth0", Hwaddr: "52:54:00:12:34:01", Ipaddr: "10.0.0.11", Netmask: "255.255.255.0", Primary: true},
			"ib":      {Device: "ib0", Type: "infiniband"},
		},
		RetryMax:   3,
		RetryDelay: 2,
	}
	d.Complete()
	return d
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		require.NoError(t, os.WriteFile(path, got, 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./ipxe -run %s -update to create %s", t.Name(), path)
	assert.Equal(t, string(want), string(got), "golden file %s (rerun with -update after checking the diff)", path)
}

func render(t *testing.T, s *ipxe.Set, name string, d *ipxe.Data) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, s.Render(&b, name, d))
	return b.Bytes()
}

func TestDefaultScriptGolden(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	got := render(t, s, "", node())
	golden(t, "default.ipxe", got)

	// The properties the golden file must keep, spelled out.
	text := string(got)
	assert.True(t, strings.HasPrefix(text, "#!ipxe\n"), "an iPXE script starts with #!ipxe")
	for _, want := range []string{
		"kernel --name kernel http://10.0.0.1:9873/kernel/52:54:00:12:34:01 ",
		"initrd --name image http://10.0.0.1:9873/image/52:54:00:12:34:01 ",
		"initrd --name system http://10.0.0.1:9873/overlay/system/52:54:00:12:34:01 ",
		"initrd --name runtime http://10.0.0.1:9873/overlay/runtime/52:54:00:12:34:01 ",
		// initrd=NAME for every initrd, for old iPXE on EFI; then the node's args.
		"boot kernel initrd=image initrd=system ${wwboot-runtime} wwid=52:54:00:12:34:01 console=ttyS0,115200 quiet crashkernel=no ",
		"sleep 2\n", "iseq ${wwboot-try} 3 ",
	} {
		assert.Contains(t, text, want)
	}
}

func TestDefaultScriptWithoutRuntimeOverlay(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	d := &ipxe.Data{Id: "n2", Hwaddr: "52:54:00:12:34:02", Ipaddr: "10.0.0.1", Port: "9873", NoRuntimeOverlay: true}
	d.Complete()
	got := string(render(t, s, ipxe.DefaultTemplate, d))
	assert.NotContains(t, got, "runtime")
	assert.Contains(t, got, "boot kernel initrd=image initrd=system wwid=52:54:00:12:34:02 ")
}

func TestUnknownScriptGolden(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	d := &ipxe.Data{Hwaddr: "52:54:00:99:99:99", BaseURL: "http://10.0.0.1:9873", WaitTime: "10"}
	d.Complete()
	got := render(t, s, ipxe.UnknownTemplate, d)
	golden(t, "unknown.ipxe", got)
	assert.Contains(t, string(got), "MAC 52:54:00:99:99:99")
	assert.Contains(t, string(got), "sleep 10\nchain --replace --autofree http://10.0.0.1:9873/ipxe/52:54:00:99:99:99 || reboot\n")
	// Warewulf's name for the same script.
	assert.Equal(t, string(got), string(render(t, s, ipxe.UnconfiguredTemplate, d)))
}

func TestWarewulfTemplateRendersUnchanged(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{Dir: "testdata/site"})
	require.NoError(t, err)
	d := node()
	d.Ipaddr6 = "fd00::1"
	d.KernelVersion = "6.1.0-56-amd64"
	d.Ipxe = "warewulf-style"
	d.Tags["IPXEMenuEntry"] = "initrd"
	d.KernelOverride = ""
	d.Complete()
	got := render(t, s, "warewulf-style", d)
	golden(t, "warewulf-style.ipxe", got)
	text := string(got)
	assert.NotContains(t, text, "<no value>")
	assert.Contains(t, text, "set baseuri http://10.0.0.1:9873/provision/52:54:00:12:34:01\n")
	assert.Contains(t, text, "Kernel 6.1.0-56-amd64 (override 6.1.0-56-amd64)")
	assert.Contains(t, text, "Image debian12 (container debian12)")
	assert.Contains(t, text, " ifname=eth0:52:54:00:12:34:01 ip=eth0:dhcp\n")

	// A missing tag and a node without an image take the other branches.
	d2 := &ipxe.Data{Id: "n3", Hwaddr: "52:54:00:12:34:03", Ipaddr: "10.0.0.1", Port: "9873"}
	d2.Complete()
	got2 := string(render(t, s, "warewulf-style", d2))
	assert.Contains(t, got2, "No image for n3.  Rebooting in 30s.")
	d2.ContainerName = "rocky9" // a pre-4.6 inventory sets only ContainerName
	d2.ImageName = ""
	d2.Complete()
	got3 := string(render(t, s, "warewulf-style", d2))
	assert.Contains(t, got3, "iseq ${platform} efi && set method imgextract || set method initrd")
	assert.Contains(t, got3, "Image rocky9 (container rocky9)")
	assert.NotContains(t, got3, "<no value>")
}

func TestSiteTemplateOverridesBuiltin(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{Dir: "testdata/site"})
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\necho site default for n1\nchain http://10.0.0.1:9873/site/52:54:00:12:34:01\n",
		string(render(t, s, "", node())))
	src, err := s.Source("default")
	require.NoError(t, err)
	assert.Equal(t, filepath.Join("testdata", "site", "default.ipxe"), src)
	src, err = s.Source("unknown")
	require.NoError(t, err)
	assert.Equal(t, "builtin", src)
	assert.Equal(t, []string{"default", "unconfigured", "unknown", "warewulf-style"}, s.Names())
}

func TestMissingSiteDirIsBuiltinsOnly(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{Dir: filepath.Join(t.TempDir(), "nope")})
	require.NoError(t, err)
	assert.Equal(t, []string{"default", "unconfigured", "unknown"}, s.Names())
}

func TestUnknownTemplateName(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{Dir: "testdata/site"})
	require.NoError(t, err)
	var b bytes.Buffer
	err = s.Render(&b, "nosuch", node())
	require.ErrorIs(t, err, ipxe.ErrNotFound)
	assert.Contains(t, err.Error(), `"nosuch"`)
	assert.Contains(t, err.Error(), "nosuch.ipxe")
	assert.Zero(t, b.Len(), "nothing written on error")
	for _, bad := range []string{"../default", "/etc/passwd", ".hidden", "a b", strings.Repeat("x", 65)} {
		_, err := s.Lookup(bad)
		require.ErrorIs(t, err, ipxe.ErrNotFound, bad)
		require.Error(t, ipxe.ValidName(bad), bad)
	}
}

func TestReloadPicksUpChangesAndKeepsOldOnError(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.ipxe")
	require.NoError(t, os.WriteFile(path, []byte("#!ipxe\necho v1 {{.Id}}\n"), 0o644))
	require.NoError(t, os.Mkdir(filepath.Join(dir, "dir.ipxe"), 0o755))           // ignored
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644)) // ignored
	s, err := ipxe.New(ipxe.Options{Dir: dir})
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\necho v1 n1\n", string(render(t, s, "site", node())))

	require.NoError(t, os.WriteFile(path, []byte("#!ipxe\necho v2 {{.Id}}\n"), 0o644))
	assert.Equal(t, "#!ipxe\necho v1 n1\n", string(render(t, s, "site", node())), "parsed once: no re-read per render")
	require.NoError(t, s.Reload())
	assert.Equal(t, "#!ipxe\necho v2 n1\n", string(render(t, s, "site", node())))

	require.NoError(t, os.WriteFile(path, []byte("#!ipxe\n\necho {{.Id\n"), 0o644))
	err = s.Reload()
	require.Error(t, err)
	assert.Regexp(t, regexp.QuoteMeta(path)+`:\d+: `, err.Error(), "the error names file and line")
	assert.Equal(t, "#!ipxe\necho v2 n1\n", string(render(t, s, "site", node())), "a failed reload keeps the old templates")

	_, err = ipxe.New(ipxe.Options{Dir: dir})
	require.Error(t, err, "New fails on a broken site template")
}

func TestRenderRefusesInjection(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	for _, mod := range []func(d *ipxe.Data){
		func(d *ipxe.Data) { d.KernelArgs = "quiet\nshell" },
		func(d *ipxe.Data) { d.Hostname = "n1\rshell" },
		func(d *ipxe.Data) { d.Tags["x"] = "a\x00b" },
		func(d *ipxe.Data) { d.NetDevs["default"].Hwaddr = "aa\nshell" },
		func(d *ipxe.Data) { d.NetDevs["ib"].Tags = map[string]string{"x": "\nshell"} },
	} {
		d := node()
		mod(d)
		var b bytes.Buffer
		err := s.Render(&b, "", d)
		require.Error(t, err)
		assert.Contains(t, err.Error(), `node "n1"`)
		assert.Zero(t, b.Len())
	}
}

func TestCompleteKeepsWhatIsSet(t *testing.T) {
	d := &ipxe.Data{
		Hostname: "h", Hwaddr: "m", Ipaddr: "10.0.0.1", Port: "80", Https: true,
		KernelURL: "http://elsewhere/k", KernelOverride: "5.14",
	}
	d.Complete()
	assert.Equal(t, "h", d.Id)
	assert.Equal(t, "h", d.Fqdn)
	assert.Equal(t, "10.0.0.1:80", d.Authority)
	assert.Equal(t, "https://10.0.0.1:80", d.BaseURL)
	assert.Equal(t, "http://elsewhere/k", d.KernelURL)
	assert.Equal(t, "https://10.0.0.1:80/image/m", d.ImageURL)
	assert.Equal(t, "https://10.0.0.1:80/ipxe/m", d.ScriptURL)
	assert.Equal(t, "5.14", d.KernelVersion)
	assert.Equal(t, 5, d.RetryMax)
	assert.Equal(t, "30", d.WaitTime)
}

func TestFuncsReachTemplates(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "f.ipxe"), []byte("#!ipxe\necho {{shout .Id}}\n"), 0o644))
	s, err := ipxe.New(ipxe.Options{Dir: dir, Funcs: template.FuncMap{"shout": strings.ToUpper}})
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\necho N1\n", string(render(t, s, "f", node())))
}

func TestAppendScript(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	out, err := s.AppendScript([]byte("HDR\n"), "", node())
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(out, []byte("HDR\n#!ipxe\n")))
	out, err = s.AppendScript([]byte("HDR\n"), "nosuch", node())
	require.Error(t, err)
	assert.Equal(t, "HDR\n", string(out))
	assert.True(t, errors.Is(err, ipxe.ErrNotFound))
}

// FuzzRender feeds hostile inventory values: rendering must not panic, and a
// script that renders must have exactly the lines the template has, so no
// value can inject an iPXE command.
func FuzzRender(f *testing.F) {
	f.Add("n1", "52:54:00:12:34:01", "console=ttyS0", "debian12", "r1")
	f.Add("n1\nshell", "aa", "quiet\r\nchain http://evil/", "img", "\x00")
	f.Add("${net0/mac}", "{{.Id}}", "|| goto x", "#!ipxe", ":label")
	s, err := ipxe.New(ipxe.Options{})
	if err != nil {
		f.Fatal(err)
	}
	base := node()
	var want bytes.Buffer
	if err := s.Render(&want, "", base); err != nil {
		f.Fatal(err)
	}
	wantLines := bytes.Count(want.Bytes(), []byte("\n"))
	f.Fuzz(func(t *testing.T, id, hw, args, image, tag string) {
		d := &ipxe.Data{Id: id, Hwaddr: hw, KernelArgs: args, ImageName: image, Ipaddr: "10.0.0.1", Port: "9873",
			Tags: map[string]string{"t": tag}, RetryMax: 3, RetryDelay: 2}
		d.Complete()
		for _, name := range []string{"", "unknown"} {
			var b bytes.Buffer
			if err := s.Render(&b, name, d); err != nil {
				continue
			}
			if name == "" {
				if got := bytes.Count(b.Bytes(), []byte("\n")); got != wantLines {
					t.Fatalf("rendered %d lines, want %d:\n%s", got, wantLines, b.String())
				}
			}
		}
	})
}

// FuzzLookup checks that no template name reaches the file system: every
// name either is a loaded template or is refused, and none panics.
func FuzzLookup(f *testing.F) {
	for _, seed := range []string{"default", "../default", "/etc/passwd", "a/b", "unknown", "", ".", "..", "x.ipxe"} {
		f.Add(seed)
	}
	s, err := ipxe.New(ipxe.Options{Dir: "testdata/site"})
	if err != nil {
		f.Fatal(err)
	}
	known := map[string]bool{"": true}
	for _, n := range s.Names() {
		known[n] = true
	}
	f.Fuzz(func(t *testing.T, name string) {
		_, err := s.Lookup(name)
		if known[name] != (err == nil) {
			t.Fatalf("Lookup(%q) = %v; known=%v", name, err, known[name])
		}
	})
}

func TestScriptCachesUntilReload(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "site.ipxe")
	require.NoError(t, os.WriteFile(path, []byte("#!ipxe\necho v1 {{.Id}}\n"), 0o644))
	s, err := ipxe.New(ipxe.Options{Dir: dir})
	require.NoError(t, err)
	d := node()
	a, err := s.Script("site", d)
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\necho v1 n1\n", string(a))
	b, err := s.Script("site", d)
	require.NoError(t, err)
	assert.Same(t, &a[0], &b[0], "second call served from the cache")

	def, err := s.Script("", d) // another template name: rendered afresh
	require.NoError(t, err)
	assert.Contains(t, string(def), "kernel --name kernel")

	require.NoError(t, os.WriteFile(path, []byte("#!ipxe\necho v2 {{.Id}}\n"), 0o644))
	require.NoError(t, s.Reload())
	c, err := s.Script("site", d)
	require.NoError(t, err)
	assert.Equal(t, "#!ipxe\necho v2 n1\n", string(c), "Reload invalidates the cache")

	other, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	_, err = other.Script("site", d)
	require.ErrorIs(t, err, ipxe.ErrNotFound, "a cache entry of one Set is not used by another")

	bad := node()
	bad.KernelArgs = "a\nb"
	_, err = s.Script("", bad)
	require.Error(t, err)
}

func TestScriptConcurrent(t *testing.T) {
	s, err := ipxe.New(ipxe.Options{})
	require.NoError(t, err)
	d := node()
	want := string(render(t, s, "", d))
	done := make(chan string, 8)
	for range 8 {
		go func() {
			out, err := s.Script("", d)
			if err != nil {
				done <- err.Error()
				return
			}
			done <- string(out)
		}()
	}
	for range 8 {
		assert.Equal(t, want, <-done)
	}
}
