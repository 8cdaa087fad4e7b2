package sendfile2_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
)

// sendWhole sends the whole of f with s over a new connection and returns
// what the peer received.
func sendWhole(t *testing.T, s *sendfile2.Sender, f *os.File) ([]byte, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	a, b := tcpPair(t)
	got := receive(b)
	n, err := s.Send(context.Background(), a, f, 0, st.Size())
	a.Close()
	body := <-got
	if err == nil && n != st.Size() {
		err = fmt.Errorf("Send = %d, nil; want %d", n, st.Size())
	}
	return body, err
}

// mapsOf lists the lines of /proc/self/maps that map path.
func mapsOf(t *testing.T, path string) []string {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(string(maps), "\n") {
		if strings.Contains(l, path) {
			lines = append(lines, l)
		}
	}
	return lines
}

// keepMethods are the methods that send from the Sender's kept mappings.
var keepMethods = []sendfile2.Method{sendfile2.Copy, sendfile2.URingMmap, sendfile2.MsgZC}

// TestKeptMappings: Copy, uring-mmap and msgzc keep a mapping of a file
// they send again and again, and what the peer gets is still the file's
// bytes at the time of each send, whatever happens to the file between
// sends.
func TestKeptMappings(t *testing.T) {
	for _, m := range keepMethods {
		t.Run(string(m), func(t *testing.T) { testKeptMappings(t, m) })
	}
}

func testKeptMappings(t *testing.T, m sendfile2.Method) {
	zc := m != sendfile2.Copy
	const size = 256 << 10
	mustSend := func(t *testing.T, s *sendfile2.Sender, f *os.File, want []byte) {
		t.Helper()
		got, err := sendWhole(t, s, f)
		if err != nil {
			t.Fatalf("Send: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("the peer received %d bytes that differ from the file's %d (first difference at %d)", len(got), len(want), firstDiff(got, want))
		}
	}
	rewrite := func(t *testing.T, path string, data []byte) {
		t.Helper()
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Copy maps a file at its second send (the first reads it); the
	// zero-copy methods, which need a mapping, keep the one of the first.
	t.Run("mapped once", func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: m})
		f, data := tempFile(t, size)
		type counts struct {
			kept         int
			mapped, hits int64
		}
		wants := []counts{{0, 0, 0}, {1, 1, 0}, {1, 1, 1}, {1, 1, 2}}
		if zc {
			wants = []counts{{1, 1, 0}, {1, 1, 1}, {1, 1, 2}, {1, 1, 3}}
		}
		for i, want := range wants {
			mustSend(t, s, f, data)
			kept, mapped, hits := sendfile2.FileMaps(s)
			if kept != want.kept || mapped != want.mapped || hits != want.hits {
				t.Fatalf("after send %d: %d kept, %d made, %d found; want %d, %d, %d", i+1, kept, mapped, hits, want.kept, want.mapped, want.hits)
			}
		}
		if got := mapsOf(t, f.Name()); len(got) != 1 {
			t.Fatalf("/proc/self/maps has %d mappings of the file, want 1: %q", len(got), got)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mapsOf(t, f.Name()); len(got) != 0 {
			t.Fatalf("after Close, /proc/self/maps still maps the file: %q", got)
		}
	})

	t.Run("small sends read", func(t *testing.T) {
		if zc {
			t.Skip("only Copy reads small ranges")
		}
		s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
		f, data := tempFile(t, 16<<10)
		for range 3 {
			mustSend(t, s, f, data)
		}
		if kept, mapped, _ := sendfile2.FileMaps(s); kept != 0 || mapped != 0 {
			t.Fatalf("16 KiB sends: %d mappings kept, %d made; want none", kept, mapped)
		}
	})

	// The kept mapping shows each version of the file as it is.
	t.Run("rewritten between sends", func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: m})
		f, data := tempFile(t, size)
		mustSend(t, s, f, data)
		mustSend(t, s, f, data)
		versions := [][]byte{
			bytes.Repeat([]byte{'B'}, size),     // overwritten in place
			bytes.Repeat([]byte{'C'}, size-100), // shorter
			bytes.Repeat([]byte{'D'}, 2*size),   // longer
			data,
		}
		for i, v := range versions {
			rewrite(t, f.Name(), v)
			mustSend(t, s, f, v)
			mustSend(t, s, f, v)
			// One mapping per version, the old one gone.
			if kept, mapped, _ := sendfile2.FileMaps(s); kept != 1 || mapped != int64(i+2) {
				t.Fatalf("after version %d: %d kept, %d made; want 1, %d", i+2, kept, mapped, i+2)
			}
			if got := mapsOf(t, f.Name()); len(got) != 1 {
				t.Fatalf("after version %d, /proc/self/maps has %d mappings of the file, want 1: %q", i+2, len(got), got)
			}
		}
	})

	t.Run("replaced between sends", func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: m})
		f, data := tempFile(t, size)
		mustSend(t, s, f, data)
		mustSend(t, s, f, data)
		other := filepath.Join(filepath.Dir(f.Name()), "other")
		next := bytes.Repeat([]byte{'E'}, size)
		rewrite(t, other, next)
		if err := os.Rename(other, f.Name()); err != nil {
			t.Fatal(err)
		}
		g, err := os.Open(f.Name())
		if err != nil {
			t.Fatal(err)
		}
		defer g.Close()
		mustSend(t, s, g, next)
		mustSend(t, s, g, next)
		mustSend(t, s, f, data) // the descriptor's file, removed from the directory
		// The replacement's, the original's, and, for the zero-copy
		// methods, the original's again: its removal changed its ctime, so
		// its last send is the first of a new version, which Copy reads.
		want := int64(2)
		if zc {
			want = 3
		}
		if _, mapped, _ := sendfile2.FileMaps(s); mapped != want {
			t.Fatalf("%d mappings made, want %d", mapped, want)
		}
	})

	// A descriptor that may not read the file must not read it through the
	// mapping that a readable descriptor of the same file left.
	t.Run("write-only descriptor", func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: m})
		f, data := tempFile(t, size)
		mustSend(t, s, f, data)
		mustSend(t, s, f, data)
		w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		got, err := sendWhole(t, s, w)
		if err == nil || len(got) != 0 {
			t.Fatalf("Send from a write-only descriptor = %v, and the peer got %d bytes; want an error and nothing", err, len(got))
		}
	})

	// The same through a listener's conn, which learns once per file whether
	// its descriptor may read it: after two readable files, the first one
	// again, the write-only one must still be refused, read from its offset
	// or under a section reader.
	t.Run("write-only descriptor through a listener", func(t *testing.T) {
		t.Run("offset", func(t *testing.T) { testWriteOnlyThroughListener(t, m, size, false) })
		t.Run("section", func(t *testing.T) { testWriteOnlyThroughListener(t, m, size, true) })
	})

	t.Run("truncated during a send", func(t *testing.T) {
		s := newSender(t, sendfile2.Config{Method: m})
		data := bytes.Repeat([]byte{'F'}, 16<<20)
		f, path := faultFile(t, data)
		mustSend(t, s, f, data)
		mustSend(t, s, f, data)
		a, b := smallWindowPair(t)
		if err := a.SetWriteBuffer(256 << 10); err != nil {
			t.Fatal(err)
		}
		const peerRead, newSize = 1 << 20, 6 << 20
		first := readPrefix(b, peerRead)
		res := goSend(context.Background(), s, a, f, 0, int64(len(data)))
		head := await(t, first, "the peer's first bytes")
		if err := os.Truncate(path, newSize); err != nil {
			t.Fatal(err)
		}
		rest := receive(b)
		r := await(t, res, "Send of a file that shrank")
		a.Close()
		got := append(head, await(t, rest, "the peer's bytes")...)
		if !errors.Is(r.err, io.ErrUnexpectedEOF) || r.n != newSize {
			t.Fatalf("Send = %d, %v; want %d and an error matching io.ErrUnexpectedEOF", r.n, r.err, newSize)
		}
		checkPrefix(t, got, data, r.n)
		want := int64(1) // the send that saw the file shrink
		if zc {
			want = 2 // the second send too
		}
		if _, _, hits := sendfile2.FileMaps(s); hits != want {
			t.Fatalf("%d sends found a kept mapping, want %d", hits, want)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mapsOf(t, path); len(got) != 0 {
			t.Fatalf("after Close, /proc/self/maps still maps the file: %q", got)
		}
	})

	// A mapping keeps a removed file's blocks: it must not outlive its use.
	t.Run("idle mappings go", func(t *testing.T) {
		s := newTunedSender(t, sendfile2.Config{Method: m}, func(t *sendfile2.Tuning) { t.MapIdle = 50 * time.Millisecond })
		f, data := tempFile(t, size)
		mustSend(t, s, f, data)
		mustSend(t, s, f, data)
		if err := os.Remove(f.Name()); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); len(mapsOf(t, f.Name())) > 0; {
			if time.Now().After(deadline) {
				kept, _, _ := sendfile2.FileMaps(s)
				t.Fatalf("a removed file idle for 10 s is still mapped (%d kept): %q", kept, mapsOf(t, f.Name()))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if kept, _, _ := sendfile2.FileMaps(s); kept != 0 {
			t.Fatalf("%d mappings kept after the sweep, want 0", kept)
		}
	})

	// No sweep while the test runs (slow under -race): a window left
	// idle for 5 s would go.
	noSweep := func(t *sendfile2.Tuning) { t.MapIdle = time.Hour }

	t.Run("concurrent", func(t *testing.T) {
		s := newTunedSender(t, sendfile2.Config{Method: m}, noSweep)
		f1, d1 := tempFile(t, size)
		f2, d2 := tempFile(t, 3<<20)
		rounds := 10
		if zc {
			rounds = 4 // what Copy's rounds test of sharing, at less cost under -race
		}
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				f, d := f1, d1
				if i%2 == 1 {
					f, d = f2, d2
				}
				for range rounds {
					got, err := sendWhole(t, s, f)
					if err != nil || !bytes.Equal(got, d) {
						t.Errorf("Send = %v, and %d bytes that differ from the file's %d", err, len(got), len(d))
						return
					}
				}
			})
		}
		wg.Wait()
		if kept, _, _ := sendfile2.FileMaps(s); kept != 2 {
			t.Fatalf("%d mappings kept, want 2 (one per file)", kept)
		}
	})

	// A range across windows of 64 MiB (of a sparse file, holding data
	// only around the boundary): each window is kept, and a zero-copy send
	// takes the next one only once the kernel has let go of the last.
	t.Run("two windows", func(t *testing.T) {
		s := newTunedSender(t, sendfile2.Config{Method: m}, noSweep)
		const boundary = 64 << 20
		off, data := int64(boundary-(1<<20)-123), make([]byte, 2<<20+4567)
		for i := range data {
			data[i] = byte(i*7 + i>>12)
		}
		path := filepath.Join(t.TempDir(), "sparse")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(data, off); err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(boundary + 3<<20); err != nil {
			t.Fatal(err)
		}
		sends := 2 // the zero-copy methods keep both windows at the first
		if !zc {
			sends = 3 // Copy keeps a window at its second send of it
		}
		for range sends {
			a, b := tcpPair(t)
			got := receive(b)
			n, err := s.Send(context.Background(), a, f, off, int64(len(data)))
			a.Close()
			if err != nil || n != int64(len(data)) {
				t.Fatalf("Send = %d, %v; want %d, nil", n, err, len(data))
			}
			if g := <-got; !bytes.Equal(g, data) {
				t.Fatalf("the peer received %d bytes that differ from the range's %d (first difference at %d)", len(g), len(data), firstDiff(g, data))
			}
		}
		if kept, _, _ := sendfile2.FileMaps(s); kept != 2 {
			t.Fatalf("%d mappings kept, want 2 (the file's two windows)", kept)
		}
	})

	// A zero-copy send holds its kept mapping until the kernel has let go
	// of the file's pages: the idle sweep, a newer version of the file and
	// Close may drop it from the kept ones meanwhile, but it is unmapped
	// only when the send has had its notifications and returns.
	t.Run("held until notified", func(t *testing.T) {
		if !zc {
			t.Skip("Copy holds a mapping only for its send(2) calls")
		}
		s := newTunedSender(t, sendfile2.Config{Method: m}, func(t *sendfile2.Tuning) { t.MapIdle = time.Millisecond })
		const oldSize, newSize = 128 << 10, 192 << 10 // told apart by their mappings' lengths
		f, data := tempFile(t, oldSize)
		a, b := smallWindowPair(t)
		if err := a.SetWriteBuffer(256 << 10); err != nil {
			t.Fatal(err)
		}
		res := goSend(context.Background(), s, a, f, 0, int64(len(data)))
		// All of it queued, none read: the send waits for its notifications,
		// and the sweep runs every millisecond.
		for deadline := time.Now().Add(hangBound); queued(t, a, b) < len(data); {
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d bytes queued after %v", queued(t, a, b), len(data), hangBound)
			}
			time.Sleep(time.Millisecond)
		}
		mapped := func(size int) bool {
			for _, l := range mapsOf(t, f.Name()) {
				var lo, hi uint64
				if _, err := fmt.Sscanf(l, "%x-%x", &lo, &hi); err != nil {
					t.Fatalf("/proc/self/maps line %q: %v", l, err)
				}
				if hi-lo == uint64(size) {
					return true
				}
			}
			return false
		}
		if !mapped(oldSize) {
			t.Fatalf("the mapping of a send waiting for its notifications was unmapped: %q", mapsOf(t, f.Name()))
		}
		// A new version of the file takes the place of the send's mapping
		// among the kept ones.
		next := bytes.Repeat([]byte{'G'}, newSize)
		rewrite(t, f.Name(), next)
		mustSend(t, s, f, next)
		if _, n, _ := sendfile2.FileMaps(s); n != 2 {
			t.Fatalf("%d mappings made, want 2", n)
		}
		if !mapped(oldSize) {
			t.Fatalf("the mapping of a send waiting for its notifications was unmapped when a new version of the file was mapped: %q", mapsOf(t, f.Name()))
		}
		select {
		case r := <-res:
			t.Fatalf("Send returned (%d, %v) before the peer read anything", r.n, r.err)
		default:
		}
		got := receive(b)
		if r := await(t, res, "Send"); r.err != nil || r.n != int64(len(data)) {
			t.Fatalf("Send = %d, %v; want %d, nil", r.n, r.err, len(data))
		}
		a.Close()
		<-got
		if mapped(oldSize) {
			t.Fatalf("the old version is still mapped after its send returned: %q", mapsOf(t, f.Name()))
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if got := mapsOf(t, f.Name()); len(got) != 0 {
			t.Fatalf("after Close, /proc/self/maps still maps the file: %q", got)
		}
	})
}

// testWriteOnlyThroughListener sends readable files, then a write-only
// descriptor, through one listener's conn, each read from its offset or,
// with section, under a section reader.
func testWriteOnlyThroughListener(t *testing.T, m sendfile2.Method, size int, section bool) {
	s := newSender(t, sendfile2.Config{Method: m})
	f, data := tempFile(t, size)
	g, other := tempFile(t, size)
	w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, b := wrappedPair(t, s, nil)
	for i, r := range []struct {
		f    *os.File
		want []byte
	}{{f, data}, {g, other}, {f, data}, {w, nil}} {
		if _, err := r.f.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
		got := readPrefix(b, len(r.want))
		var rd io.Reader = r.f
		if section {
			rd = io.NewSectionReader(r.f, 0, int64(size))
		}
		n, err := a.(io.ReaderFrom).ReadFrom(rd)
		if r.want == nil {
			if err == nil || n != 0 {
				t.Fatalf("ReadFrom of a write-only descriptor = %d, %v; want 0 and an error", n, err)
			}
			break
		}
		if err != nil || n != int64(len(r.want)) {
			t.Fatalf("ReadFrom %d = %d, %v; want %d", i, n, err, len(r.want))
		}
		if !bytes.Equal(await(t, got, "the peer's bytes"), r.want) {
			t.Fatalf("ReadFrom %d: the peer read other bytes", i)
		}
	}
	a.Close()
	if rest, _ := io.ReadAll(b); len(rest) != 0 {
		t.Fatalf("the peer got %d bytes of the write-only descriptor's send", len(rest))
	}
}
