//go:build linux

package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The guest's address on the network that qemu's user-mode stack (-netdev
// user) emulates; the host is 10.0.2.2 there.
var (
	guestAddr = [4]byte{10, 0, 2, 15}
	guestMask = [4]byte{255, 255, 255, 0}
)

// deviceUp loads the kernel modules listed, in order, in /modules/order
// (virtio_net and what it needs, from the kernel's own package: Debian's
// cloud kernels build them as modules), waits for eth0, gives it
// 10.0.2.15/24 and brings it up. It prints the device's offloads as
//
//	MATRIX net eth0 sg=0|1 tx_csum=0|1 tso=0|1
//
// It does nothing when the initramfs has no /modules.
func deviceUp() error {
	b, err := os.ReadFile("/modules/order")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, name := range strings.Fields(string(b)) {
		if err := loadModule(filepath.Join("/modules", name)); err != nil {
			return err
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat("/sys/class/net/eth0"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("no eth0 10 s after loading virtio_net")
		}
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	for _, set := range []struct {
		req  uint
		addr [4]byte
	}{{unix.SIOCSIFADDR, guestAddr}, {unix.SIOCSIFNETMASK, guestMask}} {
		ifr, err := unix.NewIfreq("eth0")
		if err != nil {
			return err
		}
		if err := ifr.SetInet4Addr(set.addr[:]); err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, set.req, ifr); err != nil {
			return fmt.Errorf("eth0: ioctl %#x: %w", set.req, err)
		}
	}
	ifr, err := unix.NewIfreq("eth0")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS eth0: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS eth0: %w", err)
	}
	fmt.Fprintf(out, "MATRIX net eth0 sg=%d tx_csum=%d tso=%d\n",
		ethtool(fd, unix.ETHTOOL_GSG), ethtool(fd, unix.ETHTOOL_GTXCSUM), ethtool(fd, unix.ETHTOOL_GTSO))
	return nil
}

// loadModule loads the module file path with finit_module(2), decompressed
// by the kernel when it ends in .xz or .zst (MODULE_INIT_COMPRESSED_FILE,
// Linux 6.0); a module already loaded or built in is fine.
func loadModule(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	flags := 0
	if strings.HasSuffix(path, ".xz") || strings.HasSuffix(path, ".zst") {
		flags = unix.MODULE_INIT_COMPRESSED_FILE
	}
	if err := unix.FinitModule(int(f.Fd()), "", flags); err != nil && err != unix.EEXIST {
		return fmt.Errorf("finit_module %s: %w", filepath.Base(path), err)
	}
	return nil
}

// ethtool reads one of eth0's legacy ethtool flags (struct ethtool_value):
// 1 or 0, or -1 when the ioctl fails.
func ethtool(fd int, cmd uint32) int {
	v := struct{ cmd, data uint32 }{cmd: cmd}
	ifr, err := unix.NewIfreq("eth0")
	if err != nil {
		return -1
	}
	// struct ifreq's union holds a pointer to the ethtool request.
	type ifreqData struct {
		name [unix.IFNAMSIZ]byte
		data unsafe.Pointer
		_    [8]byte
	}
	req := ifreqData{data: unsafe.Pointer(&v)}
	copy(req.name[:], ifr.Name())
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&req))); errno != 0 {
		return -1
	}
	if v.data != 0 {
		return 1
	}
	return 0
}

// runDeviceCheck runs `sendfile2 check --json --peer peer` over every method
// and auto, and prints what each corrupted and what the kernel reported
// copied.
func runDeviceCheck(bin string, timeout time.Duration, peer string) {
	fmt.Fprintf(out, "=== MATRIX running %s check --json --peer %s\n", bin, peer)
	var buf bytes.Buffer
	exit, seconds := run(&buf, timeout, nil, bin, "check", "--json", "--peer", peer)
	var rep struct {
		Methods []struct {
			Method         string `json:"method"`
			Resolved       string `json:"resolved"`
			ExpectedSafe   bool   `json:"expected_safe"`
			Verdict        string `json:"verdict"`
			CorruptedBytes int64  `json:"corrupted_bytes"`
			Error          string `json:"error"`
			Sent           struct {
				ZeroCopyMethodBytes int64            `json:"zero_copy_method_bytes"`
				ZeroCopyBytes       int64            `json:"zero_copy_bytes"`
				CopiedBytes         int64            `json:"copied_bytes"`
				ByMethod            map[string]int64 `json:"by_method"`
			} `json:"sent"`
		} `json:"methods"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		fmt.Fprintf(out, "MATRIX error device check: %v\n", err)
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
		var sent []string
		for k, v := range m.Sent.ByMethod {
			sent = append(sent, fmt.Sprintf("%s:%d", k, v))
		}
		slices.Sort(sent)
		if len(sent) == 0 {
			sent = []string{"-"}
		}
		fmt.Fprintf(out, "MATRIX device %s verdict=%s expected=%s resolved=%s corrupted=%d zc=%d copied=%d zcmethods=%d sent=%s\n",
			m.Method, m.Verdict, expected, resolved, m.CorruptedBytes, m.Sent.ZeroCopyBytes, m.Sent.CopiedBytes,
			m.Sent.ZeroCopyMethodBytes, strings.Join(sent, ","))
		if m.Error != "" {
			fmt.Fprintf(out, "=== MATRIX device %s error: %s\n", m.Method, m.Error)
		}
	}
	fmt.Fprintf(out, "MATRIX device exit=%d seconds=%.1f\n", exit, seconds)
}

// runDeviceBench runs `sendfile2 bench --peer peer --json` with args and
// prints each method's figures as
//
//	MATRIX bench METHOD status=S gbps=G sender_cpu=S peer_cpu=S zc=F resolved=M
//
// (CPU in seconds per GiB, zc the fraction of the zero-copy methods' bytes
// the kernel reported sent from the pages, -1 for none).
func runDeviceBench(bin string, timeout time.Duration, peer string, args []string) {
	fmt.Fprintf(out, "=== MATRIX running %s bench --json --peer %s %s\n", bin, peer, strings.Join(args, " "))
	var buf bytes.Buffer
	exit, seconds := run(&buf, timeout, nil, bin, append([]string{"bench", "--json", "--peer", peer}, args...)...)
	var rep struct {
		Results []struct {
			Method    string    `json:"method"`
			Resolved  string    `json:"resolved"`
			Status    string    `json:"status"`
			GBps      []float64 `json:"gbps"`
			SenderCPU float64   `json:"sender_cpu_s_gib"`
			PeerCPU   float64   `json:"peer_cpu_s_gib"`
			ZeroCopy  float64   `json:"zero_copy_fraction"`
		} `json:"results"`
	}
	if err := json.Unmarshal(buf.Bytes(), &rep); err != nil {
		fmt.Fprintf(out, "MATRIX error device bench: %v\n", err)
	}
	for _, r := range rep.Results {
		g := slices.Clone(r.GBps)
		slices.Sort(g)
		med := 0.0
		if len(g) > 0 {
			med = g[len(g)/2]
		}
		resolved := r.Resolved
		if resolved == "" {
			resolved = "-"
		}
		fmt.Fprintf(out, "MATRIX bench %s status=%s gbps=%.4f sender_cpu=%.2f peer_cpu=%.2f zc=%.2f resolved=%s\n",
			r.Method, r.Status, med, r.SenderCPU, r.PeerCPU, r.ZeroCopy, resolved)
	}
	fmt.Fprintf(out, "MATRIX bench exit=%d seconds=%.1f\n", exit, seconds)
}
