package provision_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
)

// fanoutAgents is how many simulated agents BenchmarkAgentFanout connects
// (WWBOOT_FANOUT_AGENTS overrides it).
const fanoutAgents = 10000

// fanoutSources is how many loopback source addresses the simulated agents
// spread over (127.0.0.10 on), so no address runs short of ports.
const fanoutSources = 40

func fanoutMAC(i int) string {
	return fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff)
}

// BenchmarkAgentFanout measures, in one run, what idle long-polling node
// agents cost the server and how fast one inventory change reaches all of
// them, over real HTTP on loopback:
//
//   - an inventory of N nodes (10,000) whose runtime overlay is the built-in
//     hosts overlay (every node's archive changes when any node does: the
//     worst case), served by a Handler in this process;
//   - N simulated agents in a child process (so that the server's memory and
//     CPU are measured apart from theirs), each fetching its overlay and then
//     long-polling with its ETag (?wait=300), one connection each, as
//     wwboot-agent does;
//   - the server's RSS, Go heap+stacks and goroutines before and with every
//     agent waiting, and its CPU over 5 s of idle waiting;
//   - one recheck of every waiter (what RecheckInterval does each minute);
//   - one inventory change (a node added), and the time until the last
//     agent has received its new archive (and the median).
//
// Run it alone, once: go test ./provision -run '^$' -bench AgentFanout -benchtime 1x
func BenchmarkAgentFanout(b *testing.B) {
	n := fanoutAgents
	if v, err := strconv.Atoi(os.Getenv("WWBOOT_FANOUT_AGENTS")); err == nil && v > 0 {
		n = v
	}
	ctx := context.Background()
	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": {RuntimeOverlay: []string{"hosts"}}},
		Nodes:        map[string]*nodedb.Record{},
	}
	for i := 1; i <= n; i++ {
		cfg.Nodes[fmt.Sprintf("n%05d", i)] = &nodedb.Record{Profiles: []string{"default"},
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: fanoutMAC(i), Ipaddr: fmt.Sprintf("10.%d.%d.%d", i>>16&0xff, i>>8&0xff, i&0xff)}}}
	}
	inv, err := nodedb.NewMemoryStore(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ov, err := overlay.New(overlay.Options{KeyDir: b.TempDir(), Server: overlay.ServerInfo{Ipaddr: "10.0.0.1", Netmask: "255.0.0.0"}})
	if err != nil {
		b.Fatal(err)
	}
	// Secure mode needs privileged ports and the nodes' own addresses,
	// which N simulated agents on one machine do not have.
	h, err := provision.NewHandler(provision.Options{Inventory: inv, Overlays: ov, InsecurePorts: true, AnySourceAddr: true})
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		h.StopWaiting()
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()

	// Warm the renderer: every node's archive exists before the agents
	// come, so what follows measures the waiting, not the first render.
	db, _ := inv.Snapshot(ctx)
	var size int64
	for i := 1; i <= n; i++ {
		node, err := db.Node(fmt.Sprintf("n%05d", i))
		if err != nil {
			b.Fatal(err)
		}
		a, err := ov.Render(ctx, db, node, overlay.Runtime)
		if err != nil {
			b.Fatal(err)
		}
		size = a.Size()
	}
	before := serverUsage()

	child := exec.Command(os.Args[0], "-test.run=^TestFanoutAgents$", "-test.v")
	child.Env = append(os.Environ(), "WWBOOT_FANOUT_SERVER=http://"+ln.Addr().String(), "WWBOOT_FANOUT_AGENTS="+strconv.Itoa(n))
	child.Stderr = os.Stderr
	out, err := child.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := child.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { _ = child.Process.Kill(); _ = child.Wait() }()
	lines := bufio.NewScanner(out)
	expect := func(prefix string) string {
		for lines.Scan() {
			if rest, ok := strings.CutPrefix(lines.Text(), prefix); ok {
				return rest
			}
		}
		b.Fatalf("agents' process ended before %q: %v", prefix, lines.Err())
		return ""
	}
	connectStart := time.Now()
	expect("READY")
	connectTook := time.Since(connectStart)
	time.Sleep(time.Second) // let the last requests settle into their wait
	waiting := serverUsage()
	time.Sleep(5 * time.Second)
	idle := serverUsage()
	// What the periodic recheck (RecheckInterval) costs: every waiter's
	// overlay rendered again, nothing changed.
	h.Notify()
	time.Sleep(2 * time.Second)
	rechecked := serverUsage()
	idleCPU := idle.since(waiting).Seconds() / 5
	recheckCPU := rechecked.since(idle).Seconds() - 2*idleCPU

	change := time.Now()
	if err := inv.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["added"] = &nodedb.Record{Profiles: []string{"default"},
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "02:ff:00:00:00:01", Ipaddr: "10.255.0.1"}}}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(expect("RECEIVED "))
	after := serverUsage()
	changeCPU := after.since(rechecked).Seconds()
	if len(fields) != 3 {
		b.Fatalf("agents' process said %q", fields)
	}
	last, _ := strconv.ParseInt(fields[0], 10, 64)
	median, _ := strconv.ParseInt(fields[1], 10, 64)
	first, _ := strconv.ParseInt(fields[2], 10, 64)
	lastD, medianD, firstD := time.Unix(0, last).Sub(change), time.Unix(0, median).Sub(change), time.Unix(0, first).Sub(change)

	perAgent := func(v uint64, w uint64) float64 { return (float64(v) - float64(w)) / float64(n) }
	b.ReportMetric(perAgent(waiting.rss, before.rss), "rss-B/agent")
	b.ReportMetric(perAgent(waiting.heap, before.heap), "heap+stack-B/agent")
	b.ReportMetric(float64(waiting.goroutines-before.goroutines)/float64(n), "goroutines/agent")
	b.ReportMetric(idleCPU*100, "idle-cpu-%")
	b.ReportMetric(idleCPU/float64(n)*1e9, "idle-cpu-ns/s/agent")
	b.ReportMetric(float64(lastD.Milliseconds()), "change-to-all-ms")
	b.ReportMetric(float64(medianD.Milliseconds()), "change-to-median-ms")
	b.ReportMetric(float64(firstD.Milliseconds()), "change-to-first-ms")
	b.ReportMetric(changeCPU, "change-cpu-s")
	b.ReportMetric(recheckCPU*1000, "recheck-cpu-ms")
	b.Logf("%d agents, runtime overlay %d bytes each; connected in %v; server RSS %d -> %d MiB, heap+stacks %d -> %d MiB, goroutines %d -> %d; "+
		"idle CPU %.2f %% over 5 s; one recheck of every waiter %.0f ms of CPU; one change reached the first agent in %v, every agent in %v (median %v), costing %.2f s of server CPU",
		n, size, connectTook.Round(time.Millisecond), before.rss>>20, waiting.rss>>20, before.heap>>20, waiting.heap>>20,
		before.goroutines, waiting.goroutines, idleCPU*100, recheckCPU*1000, firstD.Round(time.Millisecond), lastD.Round(time.Millisecond), medianD.Round(time.Millisecond),
		changeCPU)
}

// usage is what the server process uses.
type usage struct {
	rss, heap  uint64 // bytes: resident set; Go heap in use + goroutine stacks
	goroutines int
	cpu        time.Duration // user + system, so far (before the measuring GC)
	cpuEnd     time.Duration // the same after it: where the next window starts
}

// since is the server's CPU between the end of u's measurement and the
// start of v's.
func (u usage) since(prev usage) time.Duration { return u.cpu - prev.cpuEnd }

func cpuNow() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func serverUsage() usage {
	u := usage{cpu: cpuNow()} // before the GC below, which is the measurement's, not the server's
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	u.heap, u.goroutines = ms.HeapInuse+ms.StackInuse, runtime.NumGoroutine()
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseUint(f[1], 10, 64)
			u.rss = pages * uint64(os.Getpagesize())
		}
	}
	u.cpuEnd = cpuNow()
	return u
}

// TestFanoutAgents is the agents' side of BenchmarkAgentFanout, run in a
// child process; it does nothing in a normal test run. Each simulated agent
// fetches its runtime overlay, then long-polls with its ETag, one request
// per connection (Connection: close) as wwboot-agent does. It prints READY
// once every agent waits, then "RECEIVED LAST MEDIAN FIRST" (unix nanoseconds)
// once every agent has received a changed archive.
func TestFanoutAgents(t *testing.T) {
	base := os.Getenv("WWBOOT_FANOUT_SERVER")
	if base == "" {
		t.Skip("the agents' side of BenchmarkAgentFanout")
	}
	n, _ := strconv.Atoi(os.Getenv("WWBOOT_FANOUT_AGENTS"))
	addr := strings.TrimPrefix(base, "http://")
	var waitingN, receivedN atomic.Int64
	got := make([]int64, n)
	allWaiting, allReceived := make(chan struct{}), make(chan struct{})
	sem := make(chan struct{}, 256) // connect a few hundred at a time, not a SYN flood
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i%fanoutSources))}
			path := "/overlay/runtime/" + strings.ReplaceAll(fanoutMAC(i+1), ":", "-")
			sem <- struct{}{}
			code, etag, err := fanoutGet(src, addr, path, "")
			<-sem
			if err != nil || code != http.StatusOK {
				t.Errorf("agent %d: first fetch: %d %v", i, code, err)
				return
			}
			first := etag
			for {
				code, etag, err = fanoutGet(src, addr, path+"?wait=300", etag, func() {
					if waitingN.Add(1) == int64(n) {
						close(allWaiting)
					}
				})
				if err != nil {
					t.Errorf("agent %d: long-poll: %v", i, err)
					return
				}
				if code == http.StatusOK && etag != first {
					got[i] = time.Now().UnixNano()
					if receivedN.Add(1) == int64(n) {
						close(allReceived)
					}
					return
				}
			}
		})
	}
	select {
	case <-allWaiting:
	case <-time.After(5 * time.Minute):
		t.Fatalf("only %d of %d agents got to wait", waitingN.Load(), n)
	}
	// The last request is written; give the server a moment to read it.
	time.Sleep(200 * time.Millisecond)
	fmt.Println("READY")
	select {
	case <-allReceived:
	case <-time.After(5 * time.Minute):
		t.Fatalf("only %d of %d agents received the change", receivedN.Load(), n)
	}
	wg.Wait()
	slices.Sort(got)
	fmt.Printf("RECEIVED %d %d %d\n", got[n-1], got[n/2], got[0])
}

// fanoutGet makes one request on a fresh connection from src and reads the
// answer; sent runs once the request is written.
func fanoutGet(src *net.TCPAddr, addr, path, etag string, sent ...func()) (int, string, error) {
	d := net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return 0, "", err
	}
	defer c.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n"
	if etag != "" {
		req += "If-None-Match: " + etag + "\r\n"
	}
	if _, err := io.WriteString(c, req+"\r\n"); err != nil {
		return 0, "", err
	}
	for _, f := range sent {
		f()
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return 0, "", err
	}
	if e := resp.Header.Get("ETag"); e != "" {
		etag = e
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotModified {
		return resp.StatusCode, etag, errors.New(resp.Status)
	}
	return resp.StatusCode, etag, nil
}
