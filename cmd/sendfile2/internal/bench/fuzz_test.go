package bench_test

import (
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
)

// FuzzParseSize: a size that parses is a whole number of bytes from 1 to
// 2^62, decimal digits read as the integer they write, and
// the size reads back the same from FormatSize's text and from its digits.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"1000", "1e6", "64KiB", "1MiB", "1.5GiB", "64 KiB", "1mib", "4096B", "0.1KiB",
		"1e300", "NaN", "-1", "4611686018427387904", "4EiB", "4.000000000000001EiB", " 1 ", "1.KiB", ".5MiB", "0x10"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := bench.ParseSize(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseSize(%q) = %d and an error", s, n)
			}
			return
		}
		if n < 1 || n > 1<<62 {
			t.Fatalf("ParseSize(%q) = %d: outside 1 to 2^62", s, n)
		}
		if d, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil && d != n {
			t.Fatalf("ParseSize(%q) = %d, want %d", s, n, d)
		}
		for _, back := range []string{bench.FormatSize(n), strconv.FormatInt(n, 10)} {
			if m, err := bench.ParseSize(back); err != nil || m != n {
				t.Fatalf("ParseSize(%q) = %d, but ParseSize(%q) = %d, %v", s, n, back, m, err)
			}
		}
	})
}

// FuzzFormatSize: every size from 1 to 2^62 is written in a form that
// ParseSize reads back exactly.
func FuzzFormatSize(f *testing.F) {
	for _, n := range []int64{1, 1000, 1 << 10, 3 << 29, 1<<40 + 1, 1 << 62, 1<<62 - 1024, 1 << 53, 1<<53 + 1, 1<<62 - 1} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		if n < 1 || n > 1<<62 {
			return
		}
		s := bench.FormatSize(n)
		if m, err := bench.ParseSize(s); err != nil || m != n {
			t.Fatalf("ParseSize(FormatSize(%d) = %q) = %d, %v", n, s, m, err)
		}
	})
}

// FuzzParseMethods: a list that parses names each of its elements once, in
// order, each a method ParseMethods knows, and joined with commas it parses
// to the same list.
func FuzzParseMethods(f *testing.F) {
	for _, s := range []string{"", " ", "copy, sendfile,auto", "uring+dontcache,uring", "copy,copy", "copy,",
		",copy", "copy,,uring", "COPY", "uring+dontcache", "copy+dontcache", "msgzc , uring-mmap"} {
		f.Add(s)
	}
	known := append(bench.AllMethods(), bench.URingDontCache)
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := bench.ParseMethods(s)
		if err != nil {
			if ms != nil {
				t.Fatalf("ParseMethods(%q) = %v and an error", s, ms)
			}
			return
		}
		if strings.TrimSpace(s) == "" {
			if !slices.Equal(ms, bench.AllMethods()) {
				t.Fatalf("ParseMethods(%q) = %v, want every method", s, ms)
			}
			return
		}
		names := strings.Split(s, ",")
		if len(names) != len(ms) {
			t.Fatalf("ParseMethods(%q) = %v: %d names", s, ms, len(names))
		}
		for i, m := range ms {
			if !slices.Contains(known, m) || slices.Index(ms, m) != i || string(m) != strings.TrimSpace(names[i]) {
				t.Fatalf("ParseMethods(%q) = %v: element %d", s, ms, i)
			}
		}
		joined := make([]string, len(ms))
		for i, m := range ms {
			joined[i] = string(m)
		}
		if again, err := bench.ParseMethods(strings.Join(joined, ",")); err != nil || !slices.Equal(again, ms) {
			t.Fatalf("ParseMethods(%q) = %v, but joined again: %v, %v", s, ms, again, err)
		}
	})
}

// FuzzParseDirection: exactly "send" and "receive" parse, to themselves.
func FuzzParseDirection(f *testing.F) {
	for _, s := range []string{"send", "receive", "", "Receive", "recv", "send "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := bench.ParseDirection(s)
		ok := s == string(bench.Send) || s == string(bench.Receive)
		if (err == nil) != ok || ok && string(d) != s || !ok && d != "" {
			t.Fatalf("ParseDirection(%q) = %q, %v", s, d, err)
		}
	})
}
