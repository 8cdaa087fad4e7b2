package sendfile2_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
)

// endlessPeer writes to c until c is closed.
func endlessPeer(c net.Conn) {
	buf := streamBytes(1<<20, 13)
	go func() {
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	}()
}

func benchReceive(b *testing.B, s *sendfile2.Sender, size int) {
	dst := dstFile(b, "", nil)
	a, r := tcpPair(b)
	endlessPeer(a)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Receive(context.Background(), r, dst, 0, int64(size)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	r.Close()
}

// BenchmarkReceive receives from one loopback connection, whose peer sends
// without pause, into one file on the test's temporary directory, rewriting
// the same range each time, for every receive method and size.
func BenchmarkReceive(b *testing.B) {
	for _, m := range receiveMethods {
		for _, size := range []int{4 << 10, 64 << 10, 1 << 20, 64 << 20} {
			b.Run(fmt.Sprintf("method=%s/size=%s", m, sizeName(size)), func(b *testing.B) {
				benchReceive(b, newSender(b, sendfile2.Config{Method: m}), size)
			})
		}
	}
}

// residentPagesTB is residentPages (send_test.go) for benchmarks.
func residentPagesTB(tb testing.TB, f *os.File, size int) int {
	tb.Helper()
	mem, err := unix.Mmap(int(f.Fd()), 0, size, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		tb.Fatal(err)
	}
	defer unix.Munmap(mem)
	vec := make([]byte, (size+os.Getpagesize()-1)/os.Getpagesize())
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&mem[0])), uintptr(size), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		tb.Fatal(os.NewSyscallError("mincore", errno))
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}

// meminfo returns a field of /proc/meminfo in bytes.
func meminfo(b *testing.B, field string) int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if ok && name == field {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatalf("no %s in /proc/meminfo", field)
	return 0
}

// BenchmarkReceiveCache uploads 1 GiB into a new file on the test's temporary
// directory, with and without RWF_DONTCACHE (Config.DontCache), and reports
// how much the page cache grew: "cache-MiB" from /proc/meminfo's Cached when
// Receive returns, "resident-MiB" the file's pages in the page cache then
// (mincore(2)), and "synced-resident-MiB" after an fdatasync(2).
func BenchmarkReceiveCache(b *testing.B) {
	const size = 1 << 30
	for _, m := range []sendfile2.Method{sendfile2.URing, sendfile2.Copy} {
		for _, dontCache := range []bool{false, true} {
			if dontCache && m != sendfile2.URing {
				continue
			}
			b.Run(fmt.Sprintf("method=%s/dontcache=%v", m, dontCache), func(b *testing.B) {
				s := newSender(b, sendfile2.Config{Method: m, DontCache: dontCache})
				a, r := tcpPair(b)
				endlessPeer(a)
				dir := b.TempDir()
				var cached, resident, synced float64
				b.SetBytes(size)
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					b.StopTimer()
					dst, err := os.Create(fmt.Sprintf("%s/%d", dir, i))
					if err != nil {
						b.Fatal(err)
					}
					before := meminfo(b, "Cached")
					b.StartTimer()
					if _, err := s.Receive(context.Background(), r, dst, 0, size); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					cached += float64(meminfo(b, "Cached")-before) / (1 << 20)
					resident += float64(residentPagesTB(b, dst, size)*os.Getpagesize()) / (1 << 20)
					if err := dst.Sync(); err != nil {
						b.Fatal(err)
					}
					synced += float64(residentPagesTB(b, dst, size)*os.Getpagesize()) / (1 << 20)
					dst.Close()
					os.Remove(dst.Name())
					b.StartTimer()
				}
				b.StopTimer()
				n := float64(b.N)
				b.ReportMetric(cached/n, "cache-MiB")
				b.ReportMetric(resident/n, "resident-MiB")
				b.ReportMetric(synced/n, "synced-resident-MiB")
				r.Close()
			})
		}
	}
}
