// Command wwboot-storm runs a simulated boot storm against a wwboot server
// (package bench/storm) and prints its report as JSON on stdout. It is
// started by bench/storm's harness inside the client network namespace:
// every node address from -first upwards must be local there, and the
// server must answer DHCP on the segment of -interface.
//
//	wwboot-storm -interface eth0 -nodes 1000 -first 10.88.128.1 -unknown 100
package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/wwboot/wwboot/bench/storm"
)

func main() {
	var (
		iface   = flag.String("interface", "eth0", "interface DHCP is sent on")
		nodes   = flag.Int("nodes", 50, "nodes in the inventory to boot (MACs 02:00:00:.. from 1)")
		first   = flag.String("first", "10.88.128.1", "address of the first node")
		unknown = flag.Int("unknown", 0, "machines outside the inventory sending DISCOVERs (MACs 06:00:00:..)")
		ramp    = flag.Duration("ramp", 0, "spread the power-on over this time (0: all at once)")
		wait    = flag.Int("wait", 5, "the agent's long-poll wait in seconds")
		dhcpTO  = flag.Duration("dhcp-timeout", 120*time.Second, "how long a node retransmits one DHCP exchange")
		dl      = flag.Duration("deadline", 30*time.Minute, "end of the storm")
		boots   = flag.Int("boots", 1, "boot attempts per node: a failed boot reboots and starts over at PXE DHCP")
		reboot  = flag.Duration("reboot-delay", 30*time.Second, "time from a failed boot to the next DISCOVER")
		tlsURL  = flag.String("tls-url", "", "the server's agent TLS channel (https://SERVER:9874): agents enroll and use it; empty: plain HTTP (agent tls: false)")
		caFile  = flag.String("ca", "", "with -tls-url: the cluster CA certificate (ROOT/tls/ca.crt)")
	)
	flag.Parse()
	a, err := netip.ParseAddr(*first)
	if err != nil || !a.Is4() {
		fmt.Fprintf(os.Stderr, "wwboot-storm: -first %q: give an IPv4 address\n", *first)
		os.Exit(2)
	}
	// Every node holds sockets: lift the descriptor limit as far as allowed.
	rl := syscall.Rlimit{Cur: 1 << 20, Max: 1 << 20}
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
		_ = syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		rl.Cur = rl.Max
		_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
	}
	var cas *x509.CertPool
	if *tlsURL != "" {
		pemData, err := os.ReadFile(*caFile)
		cas = x509.NewCertPool()
		if err != nil || !cas.AppendCertsFromPEM(pemData) {
			fmt.Fprintf(os.Stderr, "wwboot-storm: -ca %q: give the cluster CA certificate (ROOT/tls/ca.crt) with -tls-url (%v)\n", *caFile, err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r, err := storm.Run(ctx, storm.Config{Interface: *iface, Nodes: storm.Nodes(*nodes, a), Unknown: storm.UnknownMACs(*unknown),
		Ramp: *ramp, Wait: *wait, DHCPTimeout: *dhcpTO, Deadline: *dl, Boots: *boots, RebootDelay: *reboot,
		TLSURL: *tlsURL, CAs: cas})
	if err != nil {
		fmt.Fprintln(os.Stderr, "wwboot-storm:", err)
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(r)
	if r.Failed > 0 {
		os.Exit(3)
	}
}
