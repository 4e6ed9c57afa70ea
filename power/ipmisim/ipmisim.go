// Package ipmisim runs OpenIPMI's BMC simulator, ipmi_sim (Debian package
// openipmi), as a real IPMI-over-LAN BMC for tests, the way net/http/httptest
// runs a real HTTP server.
//
// Debian ships no example configuration for ipmi_sim. Start writes one: a LAN
// channel on Addr:Port with one administrator, and a chassis_control program
// (a line ipmi_lan(5) does not describe; ipmi_sim's parser accepts it per MC).
// ipmi_sim runs that program as
//
//	PROGRAM get power            -> prints "power:0" or "power:1"
//	PROGRAM set power 0|1        (chassis power off / on; cycle is off, then on
//	                              about a second later)
//	PROGRAM set reset 1          (hard reset)
//
// The program Start writes keeps the power state in a file (Sim.Power reads
// it) and logs every call (Sim.Calls). It is pluggable: when Options.Hook is
// set, the program runs `HOOK on`, `HOOK off` or `HOOK reset` after recording
// the change, and a failing hook fails the IPMI command. A hook that starts
// and stops a QEMU VM turns the simulator into the VM's BMC.
//
// ipmi_sim offers IPMI 2.0 cipher suites up to 3 only, and ignores Get Channel
// Cipher Suites.
package ipmisim

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure one simulated BMC.
type Options struct {
	// Dir holds the configuration, the state file and ipmi_sim's output.
	Dir string
	// Addr is the IPv4 address to listen on (required).
	Addr string
	// Port is the UDP port (default 623).
	Port int
	// Username and Password are the administrator's login. ipmi_sim's
	// configuration parser takes neither spaces nor quotes; the password is
	// at most 20 bytes.
	Username, Password string
	// Hook, when set, is run as `HOOK on|off|reset` on each change.
	Hook string
	// SOL, when set, is the node's serial port for serial over LAN:
	// "tcp:HOST:PORT" (ipmi_sim connects there when a console activates; a
	// QEMU -serial tcp::PORT,server,nowait fits) or a device path.
	SOL string
	// Command builds the command that runs ipmi_sim and the readiness probe;
	// nil means exec.CommandContext. Pass a network namespace's command
	// builder to run the BMC inside it.
	Command func(ctx context.Context, name string, arg ...string) *exec.Cmd
}

// Sim is a running ipmi_sim.
type Sim struct {
	// StateFile holds "0" or "1": the chassis power.
	StateFile string
	// CallLog lists the chassis program's calls, one per line.
	CallLog string
	// Port is the UDP port the BMC listens on.
	Port int

	cmd  *exec.Cmd
	done chan error
	once sync.Once
}

// Start writes the configuration into opt.Dir, starts ipmi_sim and waits
// until its UDP port is bound, or ctx ends. The power starts off.
func Start(ctx context.Context, opt Options) (*Sim, error) {
	if opt.Addr == "" || opt.Dir == "" {
		return nil, errors.New("ipmisim: Addr and Dir are required")
	}
	for _, s := range []string{opt.Username, opt.Password, opt.Hook, opt.Dir, opt.SOL} {
		if strings.ContainsAny(s, "\"' \t\n\\$`") {
			return nil, fmt.Errorf("ipmisim: %q: no spaces, quotes or shell characters", s)
		}
	}
	if len(opt.Password) > 20 || len(opt.Username) > 16 {
		return nil, errors.New("ipmisim: username at most 16 bytes, password at most 20")
	}
	if opt.Port == 0 {
		opt.Port = 623
	}
	if opt.Command == nil {
		opt.Command = exec.CommandContext
	}
	s := &Sim{
		StateFile: filepath.Join(opt.Dir, "power"),
		CallLog:   filepath.Join(opt.Dir, "chassis.log"),
		Port:      opt.Port,
		done:      make(chan error, 1),
	}
	prog := filepath.Join(opt.Dir, "chassis")
	files := map[string]string{
		s.StateFile: "0\n",
		prog:        chassisProgram(s.StateFile, s.CallLog, opt.Hook),
		filepath.Join(opt.Dir, "lan.conf"): fmt.Sprintf(lanConf,
			opt.Addr, opt.Port, prog, opt.Username, opt.Password) + solLine(opt.SOL),
		filepath.Join(opt.Dir, "bmc.emu"): emu,
	}
	for name, body := range files {
		mode := os.FileMode(0o600) // lan.conf holds the password
		if name == prog {
			mode = 0o755
		}
		if err := os.WriteFile(name, []byte(body), mode); err != nil {
			return nil, fmt.Errorf("ipmisim: %w", err)
		}
	}
	out, err := os.Create(filepath.Join(opt.Dir, "ipmi_sim.out"))
	if err != nil {
		return nil, fmt.Errorf("ipmisim: %w", err)
	}
	defer out.Close()
	state := filepath.Join(opt.Dir, "state")
	if err := os.MkdirAll(state, 0o755); err != nil {
		return nil, fmt.Errorf("ipmisim: %w", err)
	}
	// The process outlives Start's ctx: Close ends it.
	s.cmd = opt.Command(context.WithoutCancel(ctx), "ipmi_sim", "-n", "-c", filepath.Join(opt.Dir, "lan.conf"),
		"-f", filepath.Join(opt.Dir, "bmc.emu"), "-s", state)
	s.cmd.Stdout, s.cmd.Stderr = out, out
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("ipmisim: start ipmi_sim: %w", err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	if err := s.waitBound(ctx, opt); err != nil {
		_ = s.Close()
		log, _ := os.ReadFile(out.Name())
		return nil, fmt.Errorf("ipmisim: %w; ipmi_sim said: %s", err, strings.TrimSpace(string(log)))
	}
	return s, nil
}

// waitBound polls /proc/net/udp (through opt.Command, so inside the same
// network namespace) until the port is bound.
func (s *Sim) waitBound(ctx context.Context, opt Options) error {
	want := fmt.Sprintf(":%04X ", opt.Port)
	for {
		out, err := opt.Command(ctx, "cat", "/proc/net/udp").Output()
		if err == nil && strings.Contains(string(out), want) {
			return nil
		}
		select {
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("ipmi_sim exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("waiting for UDP port %d: %w", opt.Port, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Power reports whether the chassis is on, from the state file.
func (s *Sim) Power() (bool, error) {
	b, err := os.ReadFile(s.StateFile)
	if err != nil {
		return false, err
	}
	return strings.TrimSpace(string(b)) == "1", nil
}

// SetPower sets the recorded chassis power, as if the machine had changed
// state by itself.
func (s *Sim) SetPower(on bool) error {
	v := "0\n"
	if on {
		v = "1\n"
	}
	return os.WriteFile(s.StateFile, []byte(v), 0o644)
}

// Calls returns the chassis program's calls so far ("get power",
// "set power 1", ...).
func (s *Sim) Calls() ([]string, error) {
	b, err := os.ReadFile(s.CallLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n"), nil
}

// Close stops ipmi_sim and waits for it.
func (s *Sim) Close() error {
	s.once.Do(func() {
		if s.cmd.Process != nil {
			_ = s.cmd.Process.Kill()
		}
		select {
		case <-s.done:
		case <-time.After(5 * time.Second):
		}
	})
	return nil
}

// PortString is the port as a string, for nodes.conf's ipmi: port.
func (s *Sim) PortString() string { return strconv.Itoa(s.Port) }

// lanConf is the LAN configuration: address, port, chassis program, user,
// password.
const lanConf = `# written by wwboot's ipmisim
name "wwboot-sim"
set_working_mc 0x20
  startlan 1
    addr %s %d
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "%s"
  user 1 false "" "" user 10 none md2 md5 straight
  user 2 true "%s" "%s" admin 10 none md2 md5 straight
`

// solLine configures serial over LAN on the BMC (115200 baud).
func solLine(dev string) string {
	if dev == "" {
		return ""
	}
	return fmt.Sprintf("  sol \"%s\" 115200\n", dev)
}

// emu makes the BMC (MC 0x20) exist and enables it.
const emu = `mc_setbmc 0x20
mc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr
mc_enable 0x20
`

// chassisProgram is the shell script ipmi_sim runs for chassis control.
func chassisProgram(state, log, hook string) string {
	return `#!/bin/sh
# chassis_control program for ipmi_sim, written by wwboot's ipmisim.
state=` + state + `
log=` + log + `
hook=` + hook + `
op=$1; shift
echo "$op $*" >> "$log"
case $op in
get)
	for n in "$@"; do
		case $n in
		power) echo "power:$(cat "$state")" ;;
		*) echo "$n:0" ;;
		esac
	done ;;
set)
	while [ $# -ge 2 ]; do
		n=$1; v=$2; shift 2
		case $n in
		power)
			echo "$v" > "$state"
			if [ -n "$hook" ]; then
				if [ "$v" = 1 ]; then "$hook" on || exit 1; else "$hook" off || exit 1; fi
			fi ;;
		reset)
			if [ -n "$hook" ]; then "$hook" reset || exit 1; fi ;;
		esac
	done ;;
*) exit 1 ;;
esac
exit 0
`
}
