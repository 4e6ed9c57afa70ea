package agent

import (
	"fmt"
	"net"
	"os"
	"strings"
)

// DefaultNodeConf is where the built-in wwinit overlay puts the node's
// settings.
const DefaultNodeConf = "/etc/wwboot/node.conf"

// DefaultPort is the provisioning service's port when node.conf names the
// server only by address (WWBOOT_SERVER, from before WWBOOT_URL).
const DefaultPort = "9873"

// NodeConf is what the agent reads from node.conf.
type NodeConf struct {
	URL     string           // WWBOOT_URL: the provisioning service as the node reaches it
	HWAddr  net.HardwareAddr // WWBOOT_HWADDR: the primary netdev's MAC
	HWAddrs []string         // WWBOOT_HWADDRS: every netdev's MAC
	Node    string           // WWBOOT_NODE: the node's name
	// TLSURL is WWBOOT_TLS_URL: the server's TLS channel for the agent
	// (https://HOST:9874), "" when the server has agent tls: false.
	TLSURL string
}

// ReadNodeConf reads a node.conf (shell variable assignments, values
// single-quoted as the overlay's ShellQuote writes them). A missing
// WWBOOT_URL falls back to http://WWBOOT_SERVER:9873; the errors name the
// file and the variable.
func ReadNodeConf(path string) (NodeConf, error) {
	var c NodeConf
	data, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("agent: %w (or give -server and -hwaddr)", err)
	}
	vars := map[string]string{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' {
			continue
		}
		k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		if !ok {
			return c, fmt.Errorf("agent: %s:%d: %q is not NAME=VALUE", path, i+1, line)
		}
		vars[k] = shellUnquote(v)
	}
	c.Node = vars["WWBOOT_NODE"]
	c.HWAddrs = strings.Fields(vars["WWBOOT_HWADDRS"])
	if hw := vars["WWBOOT_HWADDR"]; hw != "" {
		if c.HWAddr, err = net.ParseMAC(hw); err != nil {
			return c, fmt.Errorf("agent: %s: WWBOOT_HWADDR %q: %w", path, hw, err)
		}
	} else if len(c.HWAddrs) > 0 {
		if c.HWAddr, err = net.ParseMAC(c.HWAddrs[0]); err != nil {
			return c, fmt.Errorf("agent: %s: WWBOOT_HWADDRS %q: %w", path, c.HWAddrs[0], err)
		}
	} else {
		return c, fmt.Errorf("agent: %s: no WWBOOT_HWADDR (the node's primary network device has no hwaddr in the inventory?)", path)
	}
	c.URL = vars["WWBOOT_URL"]
	if c.URL == "" {
		srv := vars["WWBOOT_SERVER"]
		if net.ParseIP(srv) == nil {
			return c, fmt.Errorf("agent: %s: no WWBOOT_URL, and WWBOOT_SERVER %q is not an address", path, srv)
		}
		c.URL = "http://" + net.JoinHostPort(srv, DefaultPort)
	}
	if _, _, secure, err := splitURL(c.URL); err != nil {
		return c, fmt.Errorf("agent: %s: WWBOOT_URL: %w", path, err)
	} else if secure {
		return c, fmt.Errorf("agent: %s: WWBOOT_URL %q: write it as http://HOST:PORT (the TLS channel is WWBOOT_TLS_URL)", path, c.URL)
	}
	if c.TLSURL = vars["WWBOOT_TLS_URL"]; c.TLSURL != "" {
		if _, _, secure, err := splitURL(c.TLSURL); err != nil || !secure {
			return c, fmt.Errorf("agent: %s: WWBOOT_TLS_URL %q: write it as https://HOST:PORT", path, c.TLSURL)
		}
	}
	return c, nil
}

// shellUnquote undoes shell quoting of one word: single quotes, and
// backslash escapes outside them (how ShellQuote writes a quote inside a value).
func shellUnquote(s string) string {
	var b strings.Builder
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'':
			in = !in
		case c == '\\' && !in && i+1 < len(s):
			i++
			b.WriteByte(s[i])
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
