package sendfile2_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2"
	"github.com/sendfile2/sendfile2/internal/testutil"
)

// TestSendToEnd: count < 0 sends from the offset to the end of the file, for
// Send, SendWithHeader and SendFrom alike, with every method.
func TestSendToEnd(t *testing.T) {
	for _, m := range sendfile2.Methods() {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 1<<20+5)
			hdr := []byte("HEAD")
			for _, tt := range []struct {
				name string
				send func(context.Context, *net.TCPConn) (int64, error)
				want []byte
			}{
				{"Send", func(ctx context.Context, a *net.TCPConn) (int64, error) { return s.Send(ctx, a, f, 3, -1) }, data[3:]},
				{"SendFrom", func(ctx context.Context, a *net.TCPConn) (int64, error) { return s.SendFrom(ctx, a, f, 0, -1) }, data},
				{"SendWithHeader", func(ctx context.Context, a *net.TCPConn) (int64, error) {
					return s.SendWithHeader(ctx, a, hdr, f, int64(len(data)), -1)
				}, hdr},
			} {
				a, b := tcpPair(t)
				got := receive(b)
				n, err := tt.send(context.Background(), a)
				a.Close()
				if err != nil || n != int64(len(tt.want)) {
					t.Fatalf("%s = %d, %v; want %d", tt.name, n, err, len(tt.want))
				}
				if r := <-got; !bytes.Equal(r, tt.want) {
					t.Fatalf("%s: received %d bytes, not the %d to the end", tt.name, len(r), len(tt.want))
				}
			}
		})
	}
}

// TestMethodText: a Method is a flag.TextVar and a JSON string, and a name
// that is no method is refused with the package's prefix once.
func TestMethodText(t *testing.T) {
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var m sendfile2.Method
	fs.TextVar(&m, "method", sendfile2.Auto, "send method")
	if err := fs.Parse([]string{"-method", "msgzc"}); err != nil || m != sendfile2.MsgZC {
		t.Fatalf("-method msgzc: %q, %v", m, err)
	}
	err := fs.Parse([]string{"-method", "bogus"})
	if err == nil || strings.Count(err.Error(), "sendfile2:") != 1 {
		t.Fatalf("-method bogus: %v; want one error with one \"sendfile2:\"", err)
	}
	var cfg struct{ Method sendfile2.Method }
	if err := json.Unmarshal([]byte(`{"Method":"uring-mmap"}`), &cfg); err != nil || cfg.Method != sendfile2.URingMmap {
		t.Fatalf("json: %q, %v", cfg.Method, err)
	}
	if err := json.Unmarshal([]byte(`{"Method":"nope"}`), &cfg); err == nil {
		t.Fatal("json accepted method nope")
	}
	b, err := json.Marshal(struct{ M sendfile2.Method }{sendfile2.Copy})
	if err != nil || string(b) != `{"M":"copy"}` {
		t.Fatalf("Marshal = %s, %v", b, err)
	}
	if err := m.UnmarshalText(nil); err != nil || m != sendfile2.Auto {
		t.Fatalf("empty text: %q, %v; want auto", m, err)
	}
}

// TestErrorPrefixOnce: the package names itself once in its errors.
func TestErrorPrefixOnce(t *testing.T) {
	s := newSender(t, sendfile2.Config{Method: sendfile2.Copy})
	f, _ := tempFile(t, 10)
	a, _ := tcpPair(t)
	_, rangeErr := s.Send(context.Background(), a, f, 11, 1)
	_, methodErr := sendfile2.ParseMethod("bogus")
	_, cfgErr := sendfile2.NewSender(sendfile2.Config{Method: "bogus"})
	closed, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.Copy})
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	_, closedErr := closed.Send(context.Background(), a, f, 0, 1)
	for _, err := range []error{rangeErr, methodErr, cfgErr, closedErr} {
		if err == nil || !strings.HasPrefix(err.Error(), "sendfile2: ") || strings.Count(err.Error(), "sendfile2:") != 1 {
			t.Errorf("error %q: want one \"sendfile2: \" prefix", err)
		}
	}
}

// TestShutdown: Shutdown bounded by a context returns the context's error
// while a zero-copy send's notification is still due, keeps the Sender
// closed, and a later Close waits for the notification and releases every
// buffer.
func TestShutdown(t *testing.T) {
	s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.URingMmap})
	if errors.Is(err, sendfile2.ErrNotSupported) {
		testutil.RequireFeature(t, "io_uring with SEND_ZC", "6.0", false, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	f, _ := tempFile(t, 16<<20)
	a, b := smallWindowPair(t)
	sent := make(chan error, 1)
	go func() {
		_, err := s.Send(context.Background(), a, f, 0, -1)
		sent <- err
	}()
	waitInFlight(t, s)
	time.Sleep(20 * time.Millisecond) // let data queue unacknowledged
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown with the peer not reading = %v, want context.DeadlineExceeded", err)
	}
	if _, err := s.Send(context.Background(), a, f, 0, 1); !errors.Is(err, sendfile2.ErrClosed) {
		t.Fatalf("Send after Shutdown = %v, want ErrClosed", err)
	}
	go io.Copy(io.Discard, b) // the notifications come once the peer reads
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-sent; !errors.Is(err, sendfile2.ErrClosed) {
		t.Fatalf("send cancelled by Shutdown = %v, want ErrClosed", err)
	}
	if n := sendfile2.BuffersOut(s); n != 0 {
		t.Fatalf("%d buffers out after Close", n)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close = %v", err)
	}
}
