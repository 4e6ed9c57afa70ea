package hostlist_test

import (
	"fmt"

	"github.com/wwboot/wwboot/hostlist"
)

func ExampleExpand() {
	hosts, err := hostlist.Expand("n[001-003,010],gpu[1-2]b[01-02]")
	if err != nil {
		panic(err)
	}
	fmt.Println(hosts)
	// Output: [n001 n002 n003 n010 gpu1b01 gpu1b02 gpu2b01 gpu2b02]
}

func ExampleCompress() {
	fmt.Println(hostlist.Compress([]string{"n8", "n9", "n10", "n011", "login1", "c1", "c3"}))
	// Output: n[8-10,011],login1,c[1,3]
}
