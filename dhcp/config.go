package dhcp

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/iana"
)

// Mode selects how the policy answers.
type Mode int

const (
	// Full mode hands out addresses: the inventory's to known nodes, and the
	// pool's (if any) to unknown clients.
	Full Mode = iota
	// Proxy mode hands out no addresses, only PXE boot information, beside
	// a site's own DHCP server (PXE spec "ProxyDHCP", ports 67 and 4011).
	Proxy
)

// String returns "full" or "proxy".
func (m Mode) String() string {
	switch m {
	case Full:
		return "full"
	case Proxy:
		return "proxy"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// Defaults for [Config].
const (
	// DefaultHTTPPort is the provisioning HTTP port (Warewulf's).
	DefaultHTTPPort = 9873
	// DefaultIPXEScriptURL is where iPXE clients fetch their script; the
	// provisioning server serves /ipxe/{mac} with aa-bb-.. or aa:bb:..
	DefaultIPXEScriptURL = "http://{server}:{port}/ipxe/${mac:hexhyp}"
	// DefaultHTTPBootURL is the boot file URL for UEFI HTTP Boot clients;
	// the provisioning server must serve the iPXE binaries under /boot/.
	DefaultHTTPBootURL = "http://{server}:{port}/boot/{bootfile}"
	// DefaultLeaseTime is the lease time of inventory nodes.
	DefaultLeaseTime = time.Hour
)

// DefaultBootfiles maps RFC 4578 client architectures (option 93) to the
// iPXE binary served over TFTP (or over HTTP to UEFI HTTP Boot clients).
func DefaultBootfiles() map[iana.Arch]string {
	return map[iana.Arch]string{
		iana.INTEL_X86PC: "undionly.kpxe",
		iana.EFI_X86_64:  "snponly.efi",
		iana.EFI_BC:      "snponly.efi",
		iana.EFI_ARM64:   "arm64/snponly.efi",
	}
}

// Config is the boot policy.
type Config struct {
	// Mode is Full (default) or Proxy.
	Mode Mode
	// ServerAddr is this server's address: server identifier (option 54),
	// next-server (siaddr) and the {server} of the URL patterns. Invalid
	// (zero) means the address of the interface a request arrived on.
	ServerAddr netip.Addr
	// HTTPPort is the provisioning HTTP server's port, the {port} of the
	// URL patterns; 0 means DefaultHTTPPort.
	HTTPPort uint16
	// TFTP says a TFTP server runs beside this one: PXE ROM clients get the
	// bootfile name and siaddr. Without TFTP they get no boot information
	// (only iPXE and UEFI HTTP Boot clients boot).
	TFTP bool
	// IPXEScriptURL is the bootfile for clients that already run iPXE (user
	// class "iPXE", option 77, or iPXE's option 175), so they fetch their
	// script over HTTP instead of chain-loading iPXE again. {server} and
	// {port} are replaced; {mac} becomes the client's MAC as aa-bb-cc-dd-ee-ff;
	// ${...} is left for iPXE to expand. Empty means DefaultIPXEScriptURL.
	IPXEScriptURL string
	// HTTPBootURL is the bootfile for UEFI HTTP Boot clients (vendor class
	// HTTPClient): {bootfile} is replaced by the architecture's entry in
	// Bootfiles. Empty means DefaultHTTPBootURL.
	HTTPBootURL string
	// Bootfiles maps option 93 architectures to boot file names; nil means
	// DefaultBootfiles. HTTP Boot architectures (15-20) use the entry of
	// their non-HTTP counterpart. A client without option 93 is treated as
	// BIOS (0).
	Bootfiles map[iana.Arch]string
	// LeaseTime is the lease time (option 51) for inventory nodes whose
	// Host has none; 0 means DefaultLeaseTime.
	LeaseTime time.Duration
	// Discoverer, if set, is asked to assign unknown MACs to a discoverable
	// node. Without it (or when it finds none) unknown MACs get a pool
	// address, or are ignored and counted.
	Discoverer Discoverer
	// Pools are dynamic ranges for unknown clients (full mode only). A
	// request is served from the pool whose subnet holds the relay address
	// (giaddr) or the address of the interface it arrived on.
	Pools []*Pool
	// Unknown bounds the work done for MACs the inventory does not know
	// (discovery, pool, logging); the zero value means the defaults.
	Unknown UnknownLimit
	// Logger receives warnings and per-request debug lines; nil discards.
	Logger *slog.Logger
	// Metrics counts requests and outcomes; nil counts nothing.
	Metrics *Metrics
}

func (c *Config) withDefaults() (Config, error) {
	out := *c
	if out.Mode != Full && out.Mode != Proxy {
		return out, fmt.Errorf("dhcp: config: mode %v: want Full or Proxy", out.Mode)
	}
	if out.ServerAddr.IsValid() && !out.ServerAddr.Is4() {
		return out, fmt.Errorf("dhcp: config: server address %v is not IPv4", out.ServerAddr)
	}
	if out.HTTPPort == 0 {
		out.HTTPPort = DefaultHTTPPort
	}
	if out.IPXEScriptURL == "" {
		out.IPXEScriptURL = DefaultIPXEScriptURL
	}
	if out.HTTPBootURL == "" {
		out.HTTPBootURL = DefaultHTTPBootURL
	}
	for name, u := range map[string]string{"IPXEScriptURL": out.IPXEScriptURL, "HTTPBootURL": out.HTTPBootURL} {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return out, fmt.Errorf("dhcp: config: %s %q must be an http:// or https:// URL pattern", name, u)
		}
	}
	if out.Bootfiles == nil {
		out.Bootfiles = DefaultBootfiles()
	}
	for arch, f := range out.Bootfiles {
		if f == "" || len(f) > 127 {
			return out, fmt.Errorf("dhcp: config: bootfile for arch %v: %q must be 1 to 127 bytes", arch, f)
		}
	}
	if out.LeaseTime <= 0 {
		out.LeaseTime = DefaultLeaseTime
	}
	if out.Mode == Proxy && len(out.Pools) > 0 {
		return out, fmt.Errorf("dhcp: config: proxy mode hands out no addresses: remove the pools or use full mode")
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out, nil
}
