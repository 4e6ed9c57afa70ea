package ipxe_test

import (
	"fmt"
	"os"

	"github.com/wwboot/wwboot/ipxe"
)

// Render the script for a node that is not in the inventory.
func ExampleSet_Render() {
	set, err := ipxe.New(ipxe.Options{}) // built-ins only; Dir: "ROOT/ipxe" adds site templates
	if err != nil {
		fmt.Println(err)
		return
	}
	d := &ipxe.Data{Hwaddr: "52:54:00:12:34:56", Ipaddr: "10.0.0.1", Port: "9873", WaitTime: "10"}
	d.Complete()
	if err := set.Render(os.Stdout, ipxe.UnknownTemplate, d); err != nil {
		fmt.Println(err)
	}
	// Output:
	// #!ipxe
	// echo
	// echo wwboot: this node is not in the inventory.
	// echo wwboot: MAC 52:54:00:12:34:56 (net0 ${net0/mac}), address ${net0/ip}, server http://10.0.0.1:9873
	// echo wwboot: add it with: wwboot node add NAME --hwaddr 52:54:00:12:34:56 --ipaddr IP ...
	// echo wwboot: asking again in 10 s
	// sleep 10
	// chain --replace --autofree http://10.0.0.1:9873/ipxe/52:54:00:12:34:56 || reboot
}

// Find the iPXE binary to serve a UEFI x86-64 client that asked with DHCP
// option 93 value 7.
func ExampleLocate() {
	fw, _ := ipxe.FirmwareForArch(7)
	path, err := ipxe.Locate(fw, "/usr/lib/ipxe")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(fw, "->", path, "served as", ipxe.TFTPName(fw))
}

// Complete derives the server URL, Warewulf's aliases and the asset URLs.
func ExampleData_Complete() {
	d := &ipxe.Data{Id: "n1", Hwaddr: "52:54:00:12:34:01", Ipaddr: "10.0.0.1", Port: "9873", ContainerName: "rocky9"}
	d.Complete()
	fmt.Println(d.Authority, d.ImageName, d.KernelURL)
	// Output: 10.0.0.1:9873 rocky9 http://10.0.0.1:9873/kernel/52:54:00:12:34:01
}
