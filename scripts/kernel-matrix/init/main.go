//go:build linux

// Command init is /init of the initramfs that scripts/kernel-matrix.sh boots
// under each kernel. It mounts proc, sysfs, devtmpfs and a tmpfs on /tmp,
// brings up the loopback interface, raises net.core.wmem_max and rmem_max to
// 4 MiB, runs the steps of /plan (the test binaries with their -test.run
// selections, `sendfile2 probe` and `sendfile2 check`), prints what each
// produced, then machine-readable result lines, all on the console, and
// powers the machine off.
//
// Each line of /plan is one step, fields separated by blanks:
//
//	test NAME BINARY REGEXP TIMEOUT [VAR=VALUE...]
//	    run BINARY -test.run REGEXP -test.v, with VAR=VALUE added to its
//	    environment, and kill it after TIMEOUT
//	probe BINARY
//	    run BINARY probe, and BINARY probe --json
//	check BINARY TIMEOUT
//	    run BINARY check --json (every method, and auto)
//	device BINARY TIMEOUT PEER
//	    run BINARY check --json --peer PEER: the same across the network
//	    device, to `sendfile2 peer` on the host
//	bench BINARY TIMEOUT PEER [ARG...]
//	    run BINARY bench --json --peer PEER ARG...: each method's throughput,
//	    CPU and zero-copy fraction across the device
//	run TIMEOUT BINARY [ARG...]
//	    run BINARY with the arguments (a command to look at by hand)
//
// The result lines all start with "MATRIX ":
//
//	MATRIX kernel RELEASE
//	MATRIX test NAME pass=N fail=N skip=N exit=N seconds=S
//	MATRIX failed NAME TEST
//	MATRIX skipped NAME TEST: REASON
//	MATRIX probe exit=N io_uring=BOOL send_zc=BOOL ...
//	MATRIX check METHOD verdict=V expected=safe|unsafe resolved=M corrupted=N
//	MATRIX check exit=N seconds=S
//	MATRIX net eth0 sg=0|1 tx_csum=0|1 tso=0|1
//	MATRIX device METHOD verdict=V expected=safe|unsafe resolved=M corrupted=N zc=N copied=N zcmethods=N sent=M:N,...
//	MATRIX device exit=N seconds=S
//	MATRIX bench METHOD status=S gbps=G sender_cpu=S peer_cpu=S zc=F resolved=M
//	MATRIX bench exit=N seconds=S
//	MATRIX run BINARY exit=N seconds=S
//	MATRIX done
//
// Counts include subtests; several steps may share a NAME. An exit status
// other than 0 with no failed test (a leak found by TestMain, a panic, a
// timeout) is a failure too.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// out is the console; every line this program prints goes there.
var out io.Writer = os.Stdout

func main() {
	if err := setup(); err != nil {
		fmt.Fprintf(out, "MATRIX error setup: %v\n", err)
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err == nil {
		fmt.Fprintf(out, "MATRIX kernel %s\n", unix.ByteSliceToString(u.Release[:]))
	}
	if err := runPlan("/plan"); err != nil {
		fmt.Fprintf(out, "MATRIX error plan: %v\n", err)
	}
	fmt.Fprintln(out, "MATRIX done")
	unix.Sync()
	// Power off; should that fail, returning ends PID 1, and the kernel's
	// panic (panic=-1, qemu -no-reboot) ends the machine all the same.
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		fmt.Fprintf(out, "MATRIX error power off: %v\n", err)
	}
}

// setup mounts the file systems, opens the console, brings up lo and sets
// the environment that the test binaries inherit.
func setup() error {
	var errs []error
	mounts := []struct{ fs, dir, data string }{
		{"proc", "/proc", ""},
		{"sysfs", "/sys", ""},
		{"devtmpfs", "/dev", "mode=0755"},
		{"tmpfs", "/tmp", "mode=1777"},
		{"tmpfs", "/root", "mode=0700"},
	}
	for _, m := range mounts {
		if err := os.MkdirAll(m.dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		if err := unix.Mount(m.fs, m.dir, m.fs, unix.MS_NOSUID, m.data); err != nil {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", m.fs, m.dir, err))
		}
	}
	// The kernel gives init no console when the initramfs has no
	// /dev/console; devtmpfs has one.
	if c, err := os.OpenFile("/dev/console", os.O_RDWR, 0); err == nil {
		for fd := 0; fd <= 2; fd++ {
			unix.Dup3(int(c.Fd()), fd, 0)
		}
		c.Close()
	} else {
		errs = append(errs, err)
	}
	if err := loopbackUp(); err != nil {
		errs = append(errs, err)
	}
	if err := deviceUp(); err != nil {
		errs = append(errs, err)
	}
	// The socket buffer limits of Linux 6.18 (4 MiB; 212992 bytes before),
	// which the machines that run the tests natively have too: some tests ask
	// for 4 MiB with SO_SNDBUF, which these limits cap.
	for _, name := range []string{"net/core/wmem_max", "net/core/rmem_max"} {
		if err := raiseSysctl(name, 4<<20); err != nil {
			errs = append(errs, err)
		}
	}
	os.Clearenv()
	for k, v := range map[string]string{
		"PATH":   "/bin",
		"HOME":   "/root",
		"TMPDIR": "/tmp",
		"USER":   "root",
		// The guest is a machine of its own: the test that sets
		// kernel.io_uring_disabled may run.
		"SENDFILE2_TEST_SYSCTL": "1",
	} {
		os.Setenv(k, v)
	}
	return errors.Join(errs...)
}

// loopbackUp sets IFF_UP on lo with SIOCSIFFLAGS; the kernel then adds
// 127.0.0.1/8 and ::1.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// raiseSysctl sets /proc/sys/name to v when it holds less.
func raiseSysctl(name string, v int) error {
	path := "/proc/sys/" + name
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	cur, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if cur >= v {
		return nil
	}
	return os.WriteFile(path, []byte(strconv.Itoa(v)), 0)
}

func runPlan(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for line := range strings.Lines(string(b)) {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch {
		case f[0] == "test" && len(f) >= 5:
			timeout, err := time.ParseDuration(f[4])
			if err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
			runTest(f[1], f[2], f[3], timeout, f[5:])
		case f[0] == "probe" && len(f) == 2:
			runProbe(f[1])
		case f[0] == "check" && len(f) == 3:
			timeout, err := time.ParseDuration(f[2])
			if err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
			runCheck(f[1], timeout)
		case f[0] == "device" && len(f) == 4:
			timeout, err := time.ParseDuration(f[2])
			if err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
			runDeviceCheck(f[1], timeout, f[3])
		case f[0] == "bench" && len(f) >= 4:
			timeout, err := time.ParseDuration(f[2])
			if err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
			runDeviceBench(f[1], timeout, f[3], f[4:])
		case f[0] == "run" && len(f) >= 3:
			timeout, err := time.ParseDuration(f[1])
			if err != nil {
				return fmt.Errorf("%q: %w", line, err)
			}
			fmt.Fprintf(out, "=== MATRIX running %s\n", strings.Join(f[2:], " "))
			exit, seconds := run(io.Discard, timeout, nil, f[2], f[3:]...)
			fmt.Fprintf(out, "MATRIX run %s exit=%d seconds=%.1f\n", f[2], exit, seconds)
		default:
			return fmt.Errorf("bad plan line %q", line)
		}
	}
	return nil
}

// run runs bin with args and the variables env added to the environment,
// copying its standard output to the console and to w and its standard error
// to the console, and kills it when timeout has passed.
func run(w io.Writer, timeout time.Duration, env []string, bin string, args ...string) (exit int, seconds float64) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = "/tmp"
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = io.MultiWriter(out, w)
	cmd.Stderr = out
	start := time.Now()
	err := cmd.Run()
	seconds = time.Since(start).Seconds()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, seconds
	case ctx.Err() != nil:
		fmt.Fprintf(out, "MATRIX error %s: killed after %v\n", bin, timeout)
		return -1, seconds
	case errors.As(err, &ee):
		return ee.ExitCode(), seconds
	default:
		fmt.Fprintf(out, "MATRIX error %s: %v\n", bin, err)
		return -1, seconds
	}
}

var (
	resultLine  = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	contextLine = regexp.MustCompile(`^=== (?:RUN|CONT|NAME|PAUSE)\s+(\S+)`)
	logLine     = regexp.MustCompile(`^\s+\S+\.go:\d+: (.*)`)
)

// runTest runs one test binary with -test.v and counts its results.
func runTest(name, bin, selection string, timeout time.Duration, env []string) {
	fmt.Fprintf(out, "=== MATRIX running %s: %s %s -test.run %s\n", name, strings.Join(env, " "), bin, selection)
	var buf bytes.Buffer
	exit, seconds := run(&buf, timeout, env, bin, "-test.v", "-test.count=1",
		"-test.run", selection, "-test.timeout", (timeout - timeout/10).String())
	counts := map[string]int{}
	var failed, skipped []string
	current, last := "", map[string]string{}
	sc := bufio.NewScanner(&buf)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if m := contextLine.FindStringSubmatch(line); m != nil {
			current = m[1]
			continue
		}
		if m := logLine.FindStringSubmatch(line); m != nil && current != "" {
			last[current] = m[1]
			continue
		}
		m := resultLine.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		counts[m[1]]++
		switch m[1] {
		case "FAIL":
			failed = append(failed, m[2])
		case "SKIP":
			skipped = append(skipped, m[2]+": "+last[m[2]])
		}
		current = ""
	}
	for _, t := range failed {
		fmt.Fprintf(out, "MATRIX failed %s %s\n", name, t)
	}
	for _, t := range skipped {
		fmt.Fprintf(out, "MATRIX skipped %s %s\n", name, t)
	}
	fmt.Fprintf(out, "MATRIX test %s pass=%d fail=%d skip=%d exit=%d seconds=%.1f\n",
		name, counts["PASS"], counts["FAIL"], counts["SKIP"], exit, seconds)
}

// runProbe runs `sendfile2 probe` (for the log) and `sendfile2 probe --json`
// (for the result line).
func runProbe(bin string) {
	fmt.Fprintf(out, "=== MATRIX running %s probe\n", bin)
	run(io.Discard, time.Minute, nil, bin, "probe")
	var buf bytes.Buffer
	exit, _ := run(&buf, time.Minute, nil, bin, "probe", "--json")
	var f map[string]any
	if err := json.Unmarshal(buf.Bytes(), &f); err != nil {
		fmt.Fprintf(out, "MATRIX error probe: %v\n", err)
	}
	line := fmt.Sprintf("MATRIX probe exit=%d", exit)
	for _, k := range []string{"io_uring", "send_zc", "sendmsg_zc", "zc_report_usage", "read_fixed", "dontcache", "msg_zerocopy", "io_uring_disabled"} {
		line += fmt.Sprintf(" %s=%v", k, f[k])
	}
	fmt.Fprintln(out, line)
}

// runCheck runs `sendfile2 check --json` over every method and auto.
func runCheck(bin string, timeout time.Duration) {
	fmt.Fprintf(out, "=== MATRIX running %s check --json\n", bin)
	var buf bytes.Buffer
	exit, seconds := run(&buf, timeout, nil, bin, "check", "--json")
	var rep struct {
		Methods []struct {
			Method         string `json:"method"`
			Resolved       string `json:"resolved"`
			ExpectedSafe   bool   `json:"expected_safe"`
			Verdict        string `json:"verdict"`
			CorruptedBytes int64  `json:"corrupted_bytes"`
		} `json:"methods"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		fmt.Fprintf(out, "MATRIX error check: %v\n", err)
	}
	for _, m := range rep.Methods {
		expected := "unsafe"
		if m.ExpectedSafe {
			expected = "safe"
		}
		resolved := m.Resolved
		if resolved == "" {
			resolved = "-"
		}
		fmt.Fprintf(out, "MATRIX check %s verdict=%s expected=%s resolved=%s corrupted=%d\n",
			m.Method, m.Verdict, expected, resolved, m.CorruptedBytes)
	}
	fmt.Fprintf(out, "MATRIX check exit=%d seconds=%.1f\n", exit, seconds)
}
