package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// The veth pair joins two namespaces that only this run uses; these
// addresses exist only inside them.
const (
	vethSenderAddr   = "10.231.75.1"
	vethReceiverAddr = "10.231.75.2"
	vethPrefix       = "/30"
	netnsPrefix      = "sf2bench-"
)

// netnsPair is the two network namespaces of a --netns run.
type netnsPair struct {
	sender, receiver string // names, as ip netns knows them
	created          []string
}

// path is where ip netns keeps the namespace name.
func (p *netnsPair) path(name string) string {
	for _, dir := range []string{"/run/netns", "/var/run/netns"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	return filepath.Join("/run/netns", name)
}

// setupNetns creates two network namespaces joined by a veth pair, with
// iproute2's ip. remove undoes it, also after a partial setup.
func setupNetns() (*netnsPair, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: --netns needs root (it creates network namespaces and a veth pair)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return nil, errors.New("bench: --netns needs iproute2's ip (apt-get install iproute2)")
	}
	base := fmt.Sprintf("%s%d", netnsPrefix, os.Getpid())
	p := &netnsPair{sender: base + "-s", receiver: base + "-r"}
	steps := [][]string{
		{"netns", "add", p.sender},
		{"netns", "add", p.receiver},
		{"link", "add", "name", "sf2b-s", "netns", p.sender, "type", "veth", "peer", "name", "sf2b-r", "netns", p.receiver},
		{"-n", p.sender, "addr", "add", vethSenderAddr + vethPrefix, "dev", "sf2b-s"},
		{"-n", p.receiver, "addr", "add", vethReceiverAddr + vethPrefix, "dev", "sf2b-r"},
		{"-n", p.sender, "link", "set", "lo", "up"},
		{"-n", p.receiver, "link", "set", "lo", "up"},
		{"-n", p.sender, "link", "set", "sf2b-s", "up"},
		{"-n", p.receiver, "link", "set", "sf2b-r", "up"},
	}
	for i, args := range steps {
		if err := ip(args...); err != nil {
			p.remove()
			return nil, fmt.Errorf("bench: netns: %w", err)
		}
		if i < 2 {
			p.created = append(p.created, args[2])
		}
	}
	return p, nil
}

// remove deletes the namespaces, and with them the veth pair.
func (p *netnsPair) remove() error {
	var errs []error
	for _, name := range p.created {
		if err := ip("netns", "del", name); err != nil {
			errs = append(errs, err)
		}
	}
	p.created = nil
	return errors.Join(errs...)
}

func ip(args ...string) error {
	cmd := exec.Command("ip", args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// setns moves the calling thread into the network namespace at path. The
// caller has locked the goroutine to its thread.
func setns(path string) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("netns %s: %w", path, os.NewSyscallError("open", err))
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns %s: %w", path, os.NewSyscallError("setns", err))
	}
	return nil
}

// inNetns runs fn on a thread that is in the network namespace at path (or
// in this one, if path is empty): the sockets fn creates belong to it and
// stay in it wherever they are used afterwards.
func inNetns(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- os.NewSyscallError("open", err)
			return
		}
		defer unix.Close(self)
		if err := setns(path); err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		err = fn()
		// Back home, or the thread must not run anything else: a goroutine
		// that exits locked takes its thread with it.
		if unix.Setns(self, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
