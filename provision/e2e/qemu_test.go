package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/wwboot/wwboot/ipxe"
	"github.com/wwboot/wwboot/provision/netlab"
)

// firmware is a VM's boot path.
type firmware string

const (
	bios firmware = "bios" // SeaBIOS + QEMU's iPXE NIC ROM (e1000)
	uefi firmware = "uefi" // OVMF's PXE (virtio-net, no ROM) -> TFTP snponly.efi -> iPXE
)

// vm describes one QEMU boot.
type vm struct {
	Name     string // for the streamed console (-console)
	Firmware firmware
	MAC      string
	Tap      string // tap device in the lab namespace, on the bridge
	Timeout  time.Duration
	// Memory is the VM's RAM in MiB; 0 means 512.
	Memory int
	// Until ends the boot early (the VM is killed) when it returns true for
	// a console line; nil waits for the VM to power off.
	Until func(line string) bool
}

// consoleLine is one serial console line with its time since power-on.
type consoleLine struct {
	At   time.Duration
	Text string
}

// bootResult is what a boot printed and how long it took.
type bootResult struct {
	Lines   []consoleLine
	Elapsed time.Duration
	Cmdline []string
}

// find returns the first line matching re, and whether there was one.
func (r *bootResult) find(re *regexp.Regexp) (consoleLine, bool) {
	for _, l := range r.Lines {
		if re.MatchString(l.Text) {
			return l, true
		}
	}
	return consoleLine{}, false
}

func (r *bootResult) transcript() string {
	var b strings.Builder
	for _, l := range r.Lines {
		fmt.Fprintf(&b, "%7.2fs %s\n", l.At.Seconds(), l.Text)
	}
	return b.String()
}

// ovmf returns the OVMF code and variable-store templates Debian's ovmf
// package installs (4 MB flash layout first, then the older 2 MB one).
func ovmf(t *testing.T) (code, vars string) {
	t.Helper()
	for _, pair := range [][2]string{
		{"/usr/share/OVMF/OVMF_CODE_4M.fd", "/usr/share/OVMF/OVMF_VARS_4M.fd"},
		{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd"},
	} {
		if _, err := os.Stat(pair[0]); err == nil {
			if _, err := os.Stat(pair[1]); err == nil {
				return pair[0], pair[1]
			}
		}
	}
	failOrSkip(t, "OVMF firmware not found in /usr/share/OVMF (apt-get install ovmf)")
	return "", ""
}

// qemuArgs builds the QEMU command line for a VM: TCG, v.Memory MiB (512 by
// default), one CPU, serial console on stdout, no reboot (a panic or reboot
// ends the run).
func qemuArgs(t *testing.T, v vm) []string {
	t.Helper()
	mem := v.Memory
	if mem == 0 {
		mem = 512
	}
	args := []string{
		"-machine", "q35,accel=tcg", "-m", strconv.Itoa(mem), "-smp", "1",
		"-nographic", "-serial", "stdio", "-monitor", "none", "-no-reboot", "-boot", "n",
		"-netdev", "tap,id=net0,ifname=" + v.Tap + ",script=no,downscript=no",
	}
	switch v.Firmware {
	case bios:
		rom, err := ipxe.QEMUROM("e1000")
		if err != nil {
			failOrSkip(t, err.Error())
		}
		args = append(args, "-device", "e1000,netdev=net0,mac="+v.MAC+",romfile="+rom)
	case uefi:
		// No default devices: the CD-ROM q35 would add is a boot entry
		// OVMF tries (and fails) before PXE. Serial console stays.
		args = append(args, "-nodefaults", "-vga", "none")
		code, varsTemplate := ovmf(t)
		vars := filepath.Join(t.TempDir(), "OVMF_VARS.fd")
		b, err := os.ReadFile(varsTemplate)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vars, b, 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args,
			"-drive", "if=pflash,format=raw,unit=0,readonly=on,file="+code,
			"-drive", "if=pflash,format=raw,unit=1,file="+vars,
			// romfile= (empty): no iPXE ROM, so OVMF's own PXE client boots.
			"-device", "virtio-net-pci,netdev=net0,mac="+v.MAC+",romfile=")
	default:
		t.Fatalf("unknown firmware %q", v.Firmware)
	}
	return args
}

// ansi matches terminal escape sequences firmware and iPXE print.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?=]*[A-Za-z]|\x1b[()][A-Z0-9]|\x1bc`)

// boot powers a VM on in the lab namespace and collects its console until it
// powers off, v.Until says stop, or v.Timeout passes (a test failure).
func boot(t *testing.T, lab *netlab.NS, v vm) *bootResult {
	t.Helper()
	return startVM(t, lab, v).wait(t)
}

// runningVM is a VM started by startVM: its console is collected in the
// background until it powers off, is stopped, or its timeout passes.
type runningVM struct {
	v      vm
	cmd    *exec.Cmd
	cancel context.CancelFunc
	start  time.Time
	stderr strings.Builder
	done   chan struct{} // closed when QEMU has exited
	werr   error

	mu      sync.Mutex
	res     *bootResult
	stopped bool
}

// startVM powers a VM on in the lab namespace and returns at once; the
// console is read in the background. The VM is killed when the test ends.
func startVM(t *testing.T, lab *netlab.NS, v vm) *runningVM {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), v.Timeout)
	args := qemuArgs(t, v)
	r := &runningVM{v: v, cancel: cancel, done: make(chan struct{}),
		res: &bootResult{Cmdline: append([]string{"qemu-system-x86_64"}, args...)}}
	r.cmd = lab.Command(ctx, "qemu-system-x86_64", args...)
	r.cmd.Stdin = nil
	stdout, err := r.cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	r.cmd.Stderr = &r.stderr
	r.cmd.WaitDelay = 5 * time.Second
	r.start = time.Now()
	if err := r.cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start QEMU: %v", err)
	}
	t.Cleanup(r.stop)
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		sc.Split(scanConsoleLines)
		for sc.Scan() {
			text := strings.TrimSpace(ansi.ReplaceAllString(sc.Text(), ""))
			if text == "" {
				continue
			}
			at := time.Since(r.start)
			r.mu.Lock()
			r.res.Lines = append(r.res.Lines, consoleLine{At: at, Text: text})
			r.mu.Unlock()
			if *flagConsole {
				t.Logf("%s console %7.2fs | %s", v.Name, at.Seconds(), text)
			}
			if v.Until != nil && v.Until(text) {
				r.kill()
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		r.werr = r.cmd.Wait()
		r.mu.Lock()
		r.res.Elapsed = time.Since(r.start)
		r.mu.Unlock()
	}()
	return r
}

// kill cuts the VM's power without waiting for QEMU to exit.
func (r *runningVM) kill() {
	r.mu.Lock()
	r.stopped = true
	r.mu.Unlock()
	_ = r.cmd.Process.Kill()
}

// stop cuts the VM's power and waits for QEMU to exit.
func (r *runningVM) stop() {
	r.kill()
	<-r.done
	r.cancel()
}

// exited reports whether QEMU has exited (powered off, crashed, killed).
func (r *runningVM) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// since is the time since power-on.
func (r *runningVM) since() time.Duration { return time.Since(r.start) }

// result returns a copy of what the VM printed so far.
func (r *runningVM) result() *bootResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := *r.res
	c.Lines = append([]consoleLine(nil), r.res.Lines...)
	if c.Elapsed == 0 {
		c.Elapsed = time.Since(r.start)
	}
	return &c
}

// wait waits until the VM powers off, is stopped, or its timeout passes (a
// test failure), and returns what it printed.
func (r *runningVM) wait(t *testing.T) *bootResult {
	t.Helper()
	<-r.done
	r.cancel()
	res := r.result()
	r.mu.Lock()
	stopped := r.stopped
	r.mu.Unlock()
	switch {
	case stopped:
	case res.Elapsed >= r.v.Timeout:
		t.Fatalf("%s boot of %s: no power-off within %v\n%s\nconsole:\n%s", r.v.Firmware, r.v.MAC, r.v.Timeout,
			strings.Join(res.Cmdline, " "), res.transcript())
	case r.werr != nil:
		t.Fatalf("%s boot of %s: QEMU: %v: %s\nconsole:\n%s", r.v.Firmware, r.v.MAC, r.werr, r.stderr.String(), res.transcript())
	}
	return res
}

// scanConsoleLines splits on \n and on a lone \r (firmware redraws lines).
func scanConsoleLines(data []byte, atEOF bool) (advance int, token []byte, err error) {
	for i, c := range data {
		if c == '\n' || c == '\r' {
			return i + 1, data[:i], nil
		}
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func failOrSkip(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatal(why)
	}
	t.Skip(why)
}

func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			failOrSkip(t, fmt.Sprintf("%s not installed: .ci/run installs it from .ci/packages", tool))
		}
	}
}
