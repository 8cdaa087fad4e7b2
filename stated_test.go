package sendfile2_test

import (
	"bytes"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/httpconn"
)

// TestListenerStatedFile: a listener's conn sends an httpconn.StatedFile by
// the stat its caller gave, not one of its own: a file that grew after that
// stat goes out to the size the stat gave, within the section; the section
// reader moves past what was sent, and the file's offset does not.
func TestListenerStatedFile(t *testing.T) {
	for _, m := range []sendfile2.Method{sendfile2.Auto, sendfile2.Copy, sendfile2.URing, sendfile2.URingMmap} {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 256<<10)
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			st.Size -= 1000 // as if stat'ed before the last 1000 bytes were written
			a, b := wrappedPair(t, s, nil)
			for _, tt := range []struct{ off, size, want int64 }{
				{0, int64(len(data)), st.Size}, // the stat's size bounds the section
				{4096, 10000, 10000},           // within it: the section
				{st.Size - 10, 100, 10},        // across its end
			} {
				sf := &httpconn.StatedFile{SectionReader: *io.NewSectionReader(f, tt.off, tt.size), File: f, Stat: st}
				got := readPrefix(b, int(tt.want))
				n, err := a.(io.ReaderFrom).ReadFrom(sf)
				if err != nil || n != tt.want {
					t.Fatalf("ReadFrom at %d of %d = %d, %v; want %d", tt.off, tt.size, n, err, tt.want)
				}
				if !bytes.Equal(await(t, got, "the peer's bytes"), data[tt.off:tt.off+tt.want]) {
					t.Fatalf("ReadFrom at %d of %d: the peer read other bytes", tt.off, tt.size)
				}
				if pos, _ := sf.Seek(0, io.SeekCurrent); pos != tt.want {
					t.Errorf("section at %d after %d bytes sent", pos, tt.want)
				}
			}
			if off, _ := f.Seek(0, io.SeekCurrent); off != 0 {
				t.Errorf("file offset %d, want 0", off)
			}
			a.Close()
			if rest, _ := io.ReadAll(b); len(rest) != 0 {
				t.Errorf("the peer got %d bytes more", len(rest))
			}
		})
	}
}

// TestListenerStatedFileWriteOnly: a StatedFile's descriptor that may not
// read the file does not read it from the mapping another one left.
func TestListenerStatedFileWriteOnly(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	f, data := tempFile(t, 256<<10)
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	w, err := os.OpenFile(f.Name(), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	a, b := wrappedPair(t, s, nil)
	for _, file := range []*os.File{f, f, w} {
		sf := &httpconn.StatedFile{SectionReader: *io.NewSectionReader(file, 0, st.Size), File: file, Stat: st}
		want := data
		if file == w {
			want = nil
		}
		got := readPrefix(b, len(want))
		n, err := a.(io.ReaderFrom).ReadFrom(sf)
		if file == w {
			if err == nil || n != 0 {
				t.Fatalf("ReadFrom of a write-only descriptor = %d, %v; want 0 and an error", n, err)
			}
			break
		}
		if err != nil || n != int64(len(want)) || !bytes.Equal(await(t, got, "the peer's bytes"), want) {
			t.Fatalf("ReadFrom = %d, %v; want %d bytes of the file", n, err, len(want))
		}
	}
	a.Close()
	if rest, _ := io.ReadAll(b); len(rest) != 0 {
		t.Fatalf("the peer got %d bytes of the write-only descriptor's send", len(rest))
	}
}
