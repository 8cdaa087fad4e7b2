package sendfile2_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sendfile2/sendfile2"
)

// FuzzParseMethod: exactly the names of Auto and of Methods parse, each to
// itself; anything else is an error that quotes it.
func FuzzParseMethod(f *testing.F) {
	for _, m := range append(sendfile2.Methods(), sendfile2.Auto) {
		f.Add(string(m))
	}
	for _, s := range []string{"", "URING", " copy", "copy ", "uring+dontcache", "sendfile2", "auto\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := sendfile2.ParseMethod(s)
		known := sendfile2.Method(s) == sendfile2.Auto || slices.Contains(sendfile2.Methods(), sendfile2.Method(s))
		switch {
		case known && (err != nil || string(m) != s):
			t.Fatalf("ParseMethod(%q) = %q, %v", s, m, err)
		case !known && (err == nil || m != ""):
			t.Fatalf("ParseMethod(%q) = %q, %v; want an error", s, m, err)
		case !known && !strings.Contains(err.Error(), strconv.Quote(s)):
			t.Fatalf("ParseMethod(%q): error %q does not quote it", s, err)
		}
	})
}

// FuzzListenerReadFrom: whatever file reader a conn from NewListener is
// handed (a file at any offset, bare or behind a wrapper that keeps its
// SyscallConn, a section of it at any base, size and position, any of these
// behind an io.LimitedReader of any N), ReadFrom sends exactly the bytes that
// reading it to EOF returns, fails when that reading fails, and leaves the
// file's offset, the section's position and N where that reading leaves
// them. Positions and sizes are folded to near the file's size, unless they
// are beyond 2^40; section sizes are not negative.
func FuzzListenerReadFrom(f *testing.F) {
	senders := []*sendfile2.Sender{newSender(f, sendfile2.Config{}), newSender(f, sendfile2.Config{Method: sendfile2.Copy})}
	sizes := []int{0, 1, 4096, 70001}
	names := make([]string, len(sizes))
	for i, n := range sizes {
		file, _ := tempFile(f, n)
		names[i] = file.Name()
	}
	for kind := range uint8(6) {
		f.Add(kind, uint8(3), int64(100), int64(1000), int64(50000), int64(30000))
		f.Add(kind, uint8(3), int64(70001), int64(70000), int64(1<<41), int64(1<<41))
		f.Add(kind, uint8(2), int64(-1), int64(-5), int64(-1), int64(-1))
		f.Add(kind, uint8(1), int64(0), int64(0), int64(1), int64(0))
		f.Add(kind, uint8(0), int64(0), int64(0), int64(0), int64(1))
	}
	f.Fuzz(func(t *testing.T, kind, which uint8, seek, base, n, limit int64) {
		name := names[int(which)%len(names)]
		size := int64(sizes[int(which)%len(sizes)])
		fold := func(v int64) int64 {
			if v > 1<<40 || v < -1<<40 {
				return v
			}
			return v % (2*size + 3)
		}
		seek, base, n, limit = fold(seek), fold(base), fold(n), fold(limit)
		if n < 0 {
			n = -(n + 1) // a negative size overflows in io.SectionReader.Read
		}
		// build returns a fresh reader of this kind, and a description of
		// where it stands.
		build := func() (io.Reader, func() string) {
			file := open(t, name)
			file.Seek(seek, io.SeekStart) // a negative offset fails, and leaves 0
			var r io.Reader = file
			var sr *io.SectionReader
			switch kind % 3 {
			case 1:
				r = noWriteTo{file, file}
			case 2:
				sr = io.NewSectionReader(file, base, n)
				sr.Seek(seek, io.SeekStart)
				r = sr
			}
			var lr *io.LimitedReader
			if kind%6 >= 3 {
				lr = &io.LimitedReader{R: r, N: limit}
				r = lr
			}
			return r, func() string {
				s := fmt.Sprint("offset ", fileOffset(file))
				if sr != nil {
					p, _ := sr.Seek(0, io.SeekCurrent)
					s += fmt.Sprint(", position ", p)
				}
				if lr != nil {
					s += fmt.Sprint(", N ", lr.N)
				}
				return s
			}
		}
		ref, refState := build()
		want, werr := io.ReadAll(ref)
		wantState := refState()

		r, state := build()
		s := senders[int(kind/6)%len(senders)]
		conn, peer := wrappedPair(t, s, nil)
		got := receive(peer)
		sent, err := conn.(io.ReaderFrom).ReadFrom(r)
		conn.Close()
		received := <-got
		if (err != nil) != (werr != nil) || !bytes.Equal(received, want) || err == nil && sent != int64(len(want)) || state() != wantState {
			t.Fatalf("%s, %d-byte file, seek %d, section %d+%d, N %d:\nReadFrom = %d, %v, %d bytes received, %s\nreading = %d bytes, %v, %s",
				s.Method(), size, seek, base, n, limit, sent, err, len(received), state(), len(want), werr, wantState)
		}
	})
}

// listHas reports whether one of the comma-separated lists in values has an
// element that is token, ASCII case-insensitively, with optional spaces and
// tabs around it (RFC 9110 section 5.6.1).
func listHas(values []string, token string) bool {
	lower := func(s string) string {
		b := []byte(s)
		for i, c := range b {
			if 'A' <= c && c <= 'Z' {
				b[i] = c + 'a' - 'A'
			}
		}
		return string(b)
	}
	for _, v := range values {
		start := 0
		for i := 0; i <= len(v); i++ {
			if i < len(v) && v[i] != ',' {
				continue
			}
			e := v[start:i]
			for len(e) > 0 && (e[0] == ' ' || e[0] == '\t') {
				e = e[1:]
			}
			for len(e) > 0 && (e[len(e)-1] == ' ' || e[len(e)-1] == '\t') {
				e = e[:len(e)-1]
			}
			if lower(e) == token {
				return true
			}
			start = i + 1
		}
	}
	return false
}

// FuzzExpectsContinue: a PUT waits for "100 Continue" exactly when it is
// HTTP/1.1 or later and an Expect value lists the 100-continue expectation
// (listHas).
func FuzzExpectsContinue(f *testing.F) {
	for _, s := range []string{"100-continue", "100-Continue", " 100-continue ", "foo, 100-continue", "100-continue\nfoo",
		"foo\n100-continue", "100-continuex", "x100-continue", "100-continue;q=1", "", ",", "\t100-continue\t,", "100-Continue\f", "\v100-continue"} {
		f.Add(s, uint8(1))
		f.Add(s, uint8(0))
	}
	f.Fuzz(func(t *testing.T, values string, minor uint8) {
		r := &http.Request{Proto: fmt.Sprintf("HTTP/1.%d", minor), ProtoMajor: 1, ProtoMinor: int(minor), Header: http.Header{}}
		vs := strings.Split(values, "\n")
		for _, v := range vs {
			r.Header.Add("Expect", v)
		}
		want := minor >= 1 && listHas(vs, "100-continue")
		if got := sendfile2.ExpectsContinue(r); got != want {
			t.Fatalf("HTTP/1.%d, Expect %q: %v, want %v", minor, vs, got, want)
		}
	})
}
