// Command nethttp-floor is the floor for bench/provision/run.sh: a bare
// net/http server answering every request with a fixed 1,200-byte body (the
// size of a node's iPXE script), so the script benchmark can be read as a
// fraction of what Go's HTTP server alone does on the same machine.
package main

import (
	"flag"
	"fmt"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:19872", "listen address")
	flag.Parse()
	body := make([]byte, 1200)
	err := http.ListenAndServe(*addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write(body)
	}))
	fmt.Fprintln(os.Stderr, "nethttp-floor:", err)
	os.Exit(1)
}
