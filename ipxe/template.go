package ipxe

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"text/template"
)

// Names of the built-in templates.
const (
	// DefaultTemplate boots a node: kernel, image, system and runtime overlay.
	DefaultTemplate = "default"
	// UnknownTemplate answers a MAC that is not in the inventory: it shows the
	// MAC, waits and asks again.
	UnknownTemplate = "unknown"
	// UnconfiguredTemplate is Warewulf's name for UnknownTemplate; both names
	// render the same built-in unless the site directory overrides one.
	UnconfiguredTemplate = "unconfigured"
)

// Ext is the file name extension of a site template: DIR/NAME.ipxe.
const Ext = ".ipxe"

// ErrNotFound is returned (wrapped) by [Set.Render] and [Set.Lookup] when no
// template has the requested name.
var ErrNotFound = errors.New("ipxe: no such template")

// Data is what a template sees. The caller fills it from its inventory.
//
// Field names and meanings follow Warewulf's iPXE template variables where
// Warewulf has them (note that, as in Warewulf, Ipaddr and Port are the
// provisioning server's, and Hwaddr is the booting node's MAC). Fields marked
// "wwboot" are wwboot's own. [Data.Complete] derives the aliases and URLs the
// caller left empty.
//
// A Data remembers the script [Set.Script] rendered from it, so it must not
// be copied (go vet's copylocks check says so) or changed after that use.
type Data struct {
	// Id is the node's name in the inventory (Warewulf .Id).
	Id string //nolint:revive // Warewulf's name, kept for template compatibility.
	// Hostname is the node's host name (Warewulf .Hostname); defaults to Id.
	Hostname string
	// Fqdn is the node's fully qualified name (Warewulf .Fqdn); defaults to Hostname.
	Fqdn string
	// Cluster is the node's cluster name (Warewulf .Cluster).
	Cluster string
	// Hwaddr is the MAC of the interface that is booting, lower case with
	// colons, as it appears in URLs (Warewulf .Hwaddr).
	Hwaddr string
	// NodeIpaddr is the node's own IPv4 address on the booting interface (wwboot).
	NodeIpaddr string

	// Ipaddr is the provisioning server's IPv4 address (Warewulf .Ipaddr).
	Ipaddr string
	// Ipaddr6 is the provisioning server's IPv6 address (Warewulf .Ipaddr6).
	Ipaddr6 string
	// Port is the provisioning server's HTTP port (Warewulf .Port).
	Port string
	// Authority is host:port of the provisioning server (Warewulf .Authority);
	// defaults to Ipaddr:Port.
	Authority string
	// Https tells whether the server is reached over https (Warewulf .Https).
	Https bool
	// BaseURL is the server's URL without a trailing slash, e.g.
	// http://10.0.0.1:9873 (wwboot); defaults to http(s)://Authority.
	BaseURL string

	// ImageName is the node's image (Warewulf 4.6 .ImageName).
	ImageName string
	// ContainerName is Warewulf's pre-4.6 name for ImageName; each defaults to the other.
	ContainerName string
	// KernelVersion is the kernel the node boots when it is not the image's
	// default (Warewulf 4.6 .KernelVersion).
	KernelVersion string
	// KernelOverride is Warewulf's pre-4.6 name for KernelVersion; each defaults to the other.
	KernelOverride string
	// KernelArgs is the node's kernel command line, space separated (Warewulf .KernelArgs).
	KernelArgs string
	// Root is the node's root file system setting (Warewulf .Root), e.g. "initramfs".
	Root string
	// Ipxe is the node's iPXE template name as set in the inventory (Warewulf .Ipxe).
	Ipxe string
	// Tags are the node's tags (Warewulf .Tags); a missing tag renders as "".
	Tags map[string]string
	// NetDevs are the node's network devices by name (Warewulf .NetDevs).
	NetDevs map[string]*NetDev

	// ScriptURL is this node's own script URL, which the unknown-node script
	// chains to again (wwboot); defaults to BaseURL/ipxe/Hwaddr.
	ScriptURL string
	// KernelURL is where the kernel is fetched (wwboot); defaults to BaseURL/kernel/Hwaddr.
	KernelURL string
	// ImageURL is where the image is fetched (wwboot); defaults to BaseURL/image/Hwaddr.
	ImageURL string
	// SystemOverlayURL is where the system overlay is fetched (wwboot);
	// defaults to BaseURL/overlay/system/Hwaddr.
	SystemOverlayURL string
	// RuntimeOverlayURL is where the runtime overlay is fetched (wwboot);
	// defaults to BaseURL/overlay/runtime/Hwaddr. The default template skips
	// the runtime overlay when Complete left it empty, i.e. never; set
	// NoRuntimeOverlay to leave it out.
	RuntimeOverlayURL string
	// NoRuntimeOverlay makes Complete leave RuntimeOverlayURL empty (wwboot).
	NoRuntimeOverlay bool

	// MemNeed is the RAM in MiB the node needs to boot its image (wwboot;
	// see [MemNeed]); 0 means unknown, and the default script skips its
	// check. The script compares it with iPXE's ${memsize} (MiB; set only
	// in iPXE builds with MEMMAP_SETTINGS, which Debian's ipxe package
	// lacks: the check is skipped there).
	MemNeed int
	// MemDetail says where MemNeed comes from, for the console message (wwboot).
	MemDetail string

	// RetryMax is how many times the default script tries before it reboots (wwboot); default 5.
	RetryMax int
	// RetryDelay is the wait in seconds between tries (wwboot); default 5.
	RetryDelay int
	// Message is an extra line the unknown-node script shows (Warewulf .Message).
	Message string
	// WaitTime is the unknown-node script's wait in seconds before it asks
	// again (Warewulf .WaitTime); default "30".
	WaitTime string

	memNegate uint64 // 2^32 - MemNeed, for the template (MemNegate)

	memo atomic.Pointer[memo] // Set.Script's cache; see there
}

// MemNegate is 2^32 - MemNeed (0 when MemNeed is 0), filled by Complete:
// iPXE's `inc` adds it to a 32-bit setting holding ${memsize}, which wraps
// to ${memsize} - MemNeed (iPXE has no subtraction nor numeric comparison).
func (d *Data) MemNegate() uint64 { return d.memNegate }

// memo is one rendered script kept with the Data it was rendered from.
type memo struct {
	set  *Set
	gen  uint64
	name string
	out  []byte
}

// NetDev is one network device of a node, as Warewulf templates see it.
type NetDev struct {
	// Device is the interface name, e.g. eth0.
	Device string
	// Hwaddr is the MAC address.
	Hwaddr string
	// Ipaddr is the IPv4 address.
	Ipaddr string
	// Ipaddr6 is the IPv6 address.
	Ipaddr6 string
	// Netmask is the IPv4 netmask, e.g. 255.255.255.0.
	Netmask string
	// Gateway is the IPv4 gateway.
	Gateway string
	// Type is the device type, e.g. ethernet or infiniband.
	Type string
	// MTU is the MTU, empty for the default.
	MTU string
	// Primary marks the node's primary device.
	Primary bool
	// Tags are the device's tags.
	Tags map[string]string
}

// Complete fills the derived fields the caller left empty: Hostname and Fqdn
// from Id, Authority from Ipaddr and Port, BaseURL from Authority, the asset
// URLs from BaseURL and Hwaddr (wwboot's paths), the Warewulf aliases
// (ImageName/ContainerName, KernelVersion/KernelOverride) and the retry
// settings. It never overwrites a field that is set.
func (d *Data) Complete() {
	if d.Hostname == "" {
		d.Hostname = d.Id
	}
	if d.Id == "" {
		d.Id = d.Hostname
	}
	if d.Fqdn == "" {
		d.Fqdn = d.Hostname
	}
	if d.Authority == "" && d.Ipaddr != "" {
		d.Authority = d.Ipaddr
		if d.Port != "" {
			d.Authority += ":" + d.Port
		}
	}
	if d.BaseURL == "" && d.Authority != "" {
		scheme := "http://"
		if d.Https {
			scheme = "https://"
		}
		d.BaseURL = scheme + d.Authority
	}
	if d.ImageName == "" {
		d.ImageName = d.ContainerName
	}
	if d.ContainerName == "" {
		d.ContainerName = d.ImageName
	}
	if d.KernelVersion == "" {
		d.KernelVersion = d.KernelOverride
	}
	if d.KernelOverride == "" {
		d.KernelOverride = d.KernelVersion
	}
	if d.BaseURL != "" {
		fill := func(s *string, path string) {
			if *s == "" {
				*s = d.BaseURL + path + d.Hwaddr
			}
		}
		fill(&d.ScriptURL, "/ipxe/")
		fill(&d.KernelURL, "/kernel/")
		fill(&d.ImageURL, "/image/")
		fill(&d.SystemOverlayURL, "/overlay/system/")
		if !d.NoRuntimeOverlay {
			fill(&d.RuntimeOverlayURL, "/overlay/runtime/")
		}
	}
	if d.RetryMax <= 0 {
		d.RetryMax = 5
	}
	if d.RetryDelay <= 0 {
		d.RetryDelay = 5
	}
	if d.WaitTime == "" {
		d.WaitTime = "30"
	}
	if d.MemNeed > 0 {
		// ${memsize} + (2^32 - MemNeed), stored as int32: the difference.
		d.memNegate = uint64(1)<<32 - uint64(d.MemNeed)
	}
}

// check rejects values that would change the script's structure: a line
// break (or any other control character) in a value would start a new iPXE
// command.
func (d *Data) check() error {
	fields := [...]struct{ name, v string }{
		{"Id", d.Id}, {"Hostname", d.Hostname}, {"Fqdn", d.Fqdn}, {"Cluster", d.Cluster},
		{"Hwaddr", d.Hwaddr}, {"NodeIpaddr", d.NodeIpaddr}, {"Ipaddr", d.Ipaddr},
		{"Ipaddr6", d.Ipaddr6}, {"Port", d.Port}, {"Authority", d.Authority},
		{"BaseURL", d.BaseURL}, {"ImageName", d.ImageName}, {"ContainerName", d.ContainerName},
		{"KernelVersion", d.KernelVersion}, {"KernelOverride", d.KernelOverride},
		{"KernelArgs", d.KernelArgs}, {"Root", d.Root}, {"Ipxe", d.Ipxe},
		{"ScriptURL", d.ScriptURL}, {"KernelURL", d.KernelURL}, {"ImageURL", d.ImageURL},
		{"SystemOverlayURL", d.SystemOverlayURL}, {"RuntimeOverlayURL", d.RuntimeOverlayURL},
		{"Message", d.Message}, {"WaitTime", d.WaitTime}, {"MemDetail", d.MemDetail},
	}
	for _, f := range fields {
		if err := checkValue(f.v); err != nil {
			return fmt.Errorf("ipxe: node %q field %s: %w", d.Id, f.name, err)
		}
	}
	for k, v := range d.Tags {
		if err := checkValue(v); err != nil {
			return fmt.Errorf("ipxe: node %q tag %q: %w", d.Id, k, err)
		}
	}
	for name, nd := range d.NetDevs {
		if nd == nil {
			continue
		}
		for _, v := range [...]string{nd.Device, nd.Hwaddr, nd.Ipaddr, nd.Ipaddr6, nd.Netmask, nd.Gateway, nd.Type, nd.MTU} {
			if err := checkValue(v); err != nil {
				return fmt.Errorf("ipxe: node %q network device %q: %w", d.Id, name, err)
			}
		}
		for k, v := range nd.Tags {
			if err := checkValue(v); err != nil {
				return fmt.Errorf("ipxe: node %q network device %q tag %q: %w", d.Id, name, k, err)
			}
		}
	}
	return nil
}

func checkValue(s string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("control character %q at byte %d would break the iPXE script; remove it from the inventory", c, i)
		}
	}
	return nil
}

//go:embed templates/*.ipxe
var builtinFS embed.FS

// Options configure a [Set].
type Options struct {
	// Dir holds site templates, one file NAME.ipxe per template (wwboot uses
	// ROOT/ipxe). Empty means built-ins only; a missing directory is not an
	// error.
	Dir string
	// Funcs are extra template functions (for example sprig's), available to
	// built-in and site templates alike.
	Funcs template.FuncMap
	// Logger receives a line per (re)load; nil discards.
	Logger *slog.Logger
}

// Set is a parsed collection of iPXE templates. It is safe for concurrent
// use; Render never touches the disk.
type Set struct {
	opts Options
	gen  atomic.Uint64 // bumped by Reload; invalidates Script's cache
	bufs sync.Pool
	mu   sync.RWMutex
	tmpl map[string]*template.Template // by name: built-ins overlaid by site files
	site map[string]string             // name -> file, for messages
}

// New parses the built-in templates and the site templates in opts.Dir.
// An error names the file and line of a template that does not parse.
func New(opts Options) (*Set, error) {
	s := &Set{opts: opts}
	s.bufs.New = func() any { return new(bytes.Buffer) }
	if s.opts.Logger == nil {
		s.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if err := s.Reload(); err != nil {
		return nil, err
	}
	return s, nil
}

// Reload parses the built-ins and every NAME.ipxe in the site directory
// again and swaps them in at once. On error the previous templates stay.
func (s *Set) Reload() error {
	tmpl := map[string]*template.Template{}
	site := map[string]string{}
	entries, err := fs.ReadDir(builtinFS, "templates")
	if err != nil {
		return fmt.Errorf("ipxe: built-in templates: %w", err)
	}
	for _, e := range entries {
		name := strings.TrimSuffix(e.Name(), Ext)
		text, err := fs.ReadFile(builtinFS, "templates/"+e.Name())
		if err != nil {
			return fmt.Errorf("ipxe: built-in template %s: %w", name, err)
		}
		t, err := s.parse("builtin:"+e.Name(), text)
		if err != nil {
			return err
		}
		tmpl[name] = t
	}
	tmpl[UnconfiguredTemplate] = tmpl[UnknownTemplate]
	if s.opts.Dir != "" {
		files, err := os.ReadDir(s.opts.Dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("ipxe: site templates %s: %w", s.opts.Dir, err)
		}
		for _, f := range files {
			name, ok := strings.CutSuffix(f.Name(), Ext)
			if !ok || f.IsDir() || ValidName(name) != nil {
				continue
			}
			path := filepath.Join(s.opts.Dir, f.Name())
			text, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("ipxe: site template %s: %w", path, err)
			}
			t, err := s.parse(path, text)
			if err != nil {
				return err
			}
			tmpl[name] = t
			site[name] = path
		}
	}
	s.mu.Lock()
	s.tmpl, s.site = tmpl, site
	s.gen.Add(1)
	s.mu.Unlock()
	s.opts.Logger.Info("ipxe templates loaded", "templates", len(tmpl), "site", len(site), "dir", s.opts.Dir)
	return nil
}

func (s *Set) parse(file string, text []byte) (*template.Template, error) {
	t := template.New(file).Option("missingkey=zero")
	if s.opts.Funcs != nil {
		t = t.Funcs(s.opts.Funcs)
	}
	t, err := t.Parse(string(text))
	if err != nil {
		// text/template's message is "template: FILE:LINE: ...".
		return nil, fmt.Errorf("ipxe: %w; fix the template and reload", err)
	}
	return t, nil
}

// ValidName reports whether name can name a template: letters, digits, '.',
// '_' and '-', not starting with '.', at most 64 bytes. Names come from the
// inventory (a node's "ipxe template" field) and must never reach the file
// system as a path.
func ValidName(name string) error {
	if name == "" || len(name) > 64 || name[0] == '.' {
		return fmt.Errorf("ipxe: template name %q: want 1-64 letters, digits, '.', '_' or '-', not starting with '.'", name)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("ipxe: template name %q: character %q not allowed; use letters, digits, '.', '_' or '-'", name, c)
		}
	}
	return nil
}

// Names lists the available template names, sorted.
func (s *Set) Names() []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	names := make([]string, 0, len(s.tmpl))
	for n := range s.tmpl {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Source tells where template name comes from: the site file's path, or
// "builtin". It wraps ErrNotFound for an unknown name.
func (s *Set) Source(name string) (string, error) {
	if name == "" {
		name = DefaultTemplate
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.tmpl[name]; !ok {
		return "", fmt.Errorf("%w: %q (have %s)", ErrNotFound, name, strings.Join(s.namesLocked(), ", "))
	}
	if p, ok := s.site[name]; ok {
		return p, nil
	}
	return "builtin", nil
}

func (s *Set) namesLocked() []string {
	names := make([]string, 0, len(s.tmpl))
	for n := range s.tmpl {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Lookup returns the parsed template called name ("" means "default"). It
// wraps ErrNotFound when there is none.
func (s *Set) Lookup(name string) (*template.Template, error) {
	if name == "" {
		name = DefaultTemplate
	}
	s.mu.RLock()
	t, ok := s.tmpl[name]
	s.mu.RUnlock()
	if !ok {
		if err := ValidName(name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		return nil, fmt.Errorf("%w: %q (have %s); put %s%s in %q or fix the node's ipxe template",
			ErrNotFound, name, strings.Join(s.namesLocked(), ", "), name, Ext, s.opts.Dir)
	}
	return t, nil
}

// Render executes template name ("" means "default") for d and writes the
// script to w in one Write. d should have been completed ([Data.Complete]);
// Render does not modify it. A value containing a control character is
// refused, since it would inject iPXE commands. Nothing is written on error.
func (s *Set) Render(w io.Writer, name string, d *Data) error {
	t, err := s.Lookup(name)
	if err != nil {
		return err
	}
	if err := d.check(); err != nil {
		return err
	}
	buf := s.bufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer func() {
		if buf.Cap() <= 64<<10 {
			s.bufs.Put(buf)
		}
	}()
	if err := t.Execute(buf, d); err != nil {
		return fmt.Errorf("ipxe: render template %q for node %q: %w", name, d.Id, err)
	}
	if _, err := w.Write(buf.Bytes()); err != nil {
		return fmt.Errorf("ipxe: write script for node %q: %w", d.Id, err)
	}
	return nil
}

// AppendScript renders like [Set.Render] and appends the script to dst.
func (s *Set) AppendScript(dst []byte, name string, d *Data) ([]byte, error) {
	b := bytes.NewBuffer(dst)
	if err := s.Render(b, name, d); err != nil {
		return dst, err
	}
	return b.Bytes(), nil
}

// Script returns the script template name renders for d, rendering it only
// the first time: the result is kept in d (one template's output per Data)
// until the next [Set.Reload]. This is the provisioning server's hot path
// (one map lookup to find d, then no template execution at all).
//
// The caller must treat d as immutable once it has been passed to Script: to
// change a node, build a new Data (inventory snapshots are replaced, not
// edited, anyway). The returned slice is shared; do not modify it.
func (s *Set) Script(name string, d *Data) ([]byte, error) {
	gen := s.gen.Load()
	if m := d.memo.Load(); m != nil && m.set == s && m.gen == gen && m.name == name {
		return m.out, nil
	}
	out, err := s.AppendScript(nil, name, d)
	if err != nil {
		return nil, err
	}
	d.memo.Store(&memo{set: s, gen: gen, name: name, out: out})
	return out, nil
}
