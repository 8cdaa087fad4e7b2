package bytesize_test

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/dustin/go-humanize"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bytesize"
)

// FuzzParse: a count that parses is from 0 to 2^63-1; decimal digits read
// as the integer they write; where go-humanize reads the text as a whole
// number of bytes within float64's exact range, Parse reads the same; and
// the count reads back the same from Format's text and from its digits.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"1000", "1e6", "64KiB", "1MiB", "1.5GiB", "64 KiB", "1mib", "4096B", "0.1KiB",
		"1e300", "NaN", "-1", "0", "4611686018427387904", "8EiB", "7.9EiB", "4.000000000000001EiB", " 1 ", "1.KiB",
		".5MiB", "0x10", "9223372036854775807", "9223372036854775808", "1.5", "500MB", "64k"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := bytesize.Parse(s)
		if err != nil {
			if n != 0 {
				t.Fatalf("Parse(%q) = %d and an error", s, n)
			}
			return
		}
		if n < 0 {
			t.Fatalf("Parse(%q) = %d", s, n)
		}
		if d, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64); err == nil && d != n {
			t.Fatalf("Parse(%q) = %d, want %d", s, n, d)
		}
		if h, err := humanize.ParseBytes(s); err == nil && n < 1<<53 && h != uint64(n) {
			t.Fatalf("Parse(%q) = %d, go-humanize reads %d", s, n, h)
		}
		for _, back := range []string{bytesize.Format(n), strconv.FormatInt(n, 10)} {
			if m, err := bytesize.Parse(back); err != nil || m != n {
				t.Fatalf("Parse(%q) = %d, but Parse(%q) = %d, %v", s, n, back, m, err)
			}
		}
	})
}

// FuzzFormat: every count from 0 to 2^63-1 is written in a form that Parse
// reads back exactly.
func FuzzFormat(f *testing.F) {
	for _, n := range []int64{0, 1, 1000, 1 << 10, 3 << 29, 1<<40 + 1, 1 << 62, 1<<62 - 1024, 1 << 53, 1<<53 + 1, math.MaxInt64} {
		f.Add(n)
	}
	f.Fuzz(func(t *testing.T, n int64) {
		if n < 0 {
			return
		}
		s := bytesize.Format(n)
		if m, err := bytesize.Parse(s); err != nil || m != n {
			t.Fatalf("Parse(Format(%d) = %q) = %d, %v", n, s, m, err)
		}
	})
}
