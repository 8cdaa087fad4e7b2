package sendfile2_test

import (
	"context"
	"fmt"
	"math"
	"net"
	"testing"

	"github.com/sendfile2/sendfile2"
)

var benchSizes = []int{4 << 10, 64 << 10, 1 << 20, 64 << 20}

// drain reads c into a 1 MiB buffer until it closes.
func drain(c net.Conn) {
	buf := make([]byte, 1<<20)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

func benchSend(b *testing.B, s *sendfile2.Sender, size int) {
	f, _ := tempFile(b, size)
	a, r := tcpPair(b)
	go drain(r)
	b.SetBytes(int64(size))
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Send(context.Background(), a, f, 0, int64(size)); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	st := s.Stats().Methods[s.Method()]
	if st.Bytes > 0 && st.ZeroCopyBytes+st.CopiedBytes > 0 {
		b.ReportMetric(float64(st.CopiedBytes)/float64(st.ZeroCopyBytes+st.CopiedBytes), "copied-fraction")
	}
	a.Close()
}

// BenchmarkSend sends one file repeatedly over one loopback connection to a
// reading peer, for every method and size. Compare methods with benchstat.
func BenchmarkSend(b *testing.B) {
	for _, m := range sendfile2.Methods() {
		for _, size := range benchSizes {
			b.Run(fmt.Sprintf("method=%s/size=%s", m, sizeName(size)), func(b *testing.B) {
				benchSend(b, newSender(b, sendfile2.Config{Method: m}), size)
			})
		}
	}
}

// BenchmarkPipeline is one uring Send of 64 MiB through 64 KiB registered
// buffers, the design scripts/compare-liburing.sh holds against its C
// pipeline (safe-send pipe: 8 buffers, linked SEND_ZC chains, a buffer
// reused after its notification): from the file (READ_FIXED, then SEND_ZC)
// and from memory (SendWithHeader of 64 MiB and an empty range: copied into
// the buffers, as the C program does).
func BenchmarkPipeline(b *testing.B) {
	const size = 64 << 20
	for _, source := range []string{"file", "memory"} {
		b.Run("source="+source, func(b *testing.B) {
			s := newSender(b, sendfile2.Config{Method: sendfile2.URing, BufferSize: 64 << 10})
			f, data := tempFile(b, size)
			var hdr []byte
			n := int64(size)
			if source == "memory" {
				hdr, n = data, 0
			}
			a, r := tcpPair(b)
			go drain(r)
			b.SetBytes(size)
			for b.Loop() {
				if _, err := s.SendWithHeader(context.Background(), a, hdr, f, 0, n); err != nil {
					b.Fatal(err)
				}
			}
			a.Close()
		})
	}
}

// BenchmarkCopyVariants measures the ways Copy can read the file: with
// pread(2) into a buffer, from a mapping of its own made and unmade at each
// send, or from a mapping the Sender keeps (the same file is sent again and
// again: every send after the second finds it mapped). copyKeepMin and
// copyMmapMin follow from it.
func BenchmarkCopyVariants(b *testing.B) {
	for _, variant := range []string{"pread", "mmap", "kept"} {
		for _, size := range []int{4 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20, 64 << 20} {
			b.Run(fmt.Sprintf("variant=%s/size=%s", variant, sizeName(size)), func(b *testing.B) {
				keep, own := int64(math.MaxInt64), int64(math.MaxInt64)
				switch variant {
				case "mmap":
					own = 0
				case "kept":
					keep = 0
				}
				tune := func(t *sendfile2.Tuning) { t.CopyKeepMin, t.CopyMmapMin = keep, own }
				benchSend(b, newTunedSender(b, sendfile2.Config{Method: sendfile2.Copy}, tune), size)
			})
		}
	}
}

// BenchmarkCopyCall measures how much one send(2) of Copy should take
// (Tuning.SendCall), sending a 64 MiB file from the Sender's kept mapping:
// 0 is no limit, the whole mapping offered to each call. SendCall's default
// follows from it.
func BenchmarkCopyCall(b *testing.B) {
	for _, call := range []int{256 << 10, 1 << 20, 4 << 20, 0} {
		name := "none"
		if call > 0 {
			name = sizeName(call)
		}
		b.Run("call="+name, func(b *testing.B) {
			tune := func(t *sendfile2.Tuning) { t.SendCall = call }
			benchSend(b, newTunedSender(b, sendfile2.Config{Method: sendfile2.Copy}, tune), 64<<20)
		})
	}
}

func sizeName(n int) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%dMiB", n>>20)
	default:
		return fmt.Sprintf("%dKiB", n>>10)
	}
}
