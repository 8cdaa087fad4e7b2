package bytesize_test

import (
	"strings"
	"testing"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bytesize"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"1000", 1000},
		{"1e6", 1000000},
		{"64KiB", 64 << 10},
		{"1MiB", 1 << 20},
		{"1GiB", 1 << 30},
		{"2GiB", 2 << 30},
		{"1.5GiB", 3 << 29},
		{"500MB", 500e6},
		{"64KB", 64000},
		{"64k", 64000},
		{"64 KiB", 64 << 10},
		{" 1 GiB ", 1 << 30},
		{"1mib", 1 << 20},
		{"4096B", 4096},
		{"9223372036854775807", 1<<63 - 1},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := bytesize.Parse(tc.in)
			if err != nil || got != tc.want {
				t.Fatalf("Parse(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ in, says string }{
		{"", "empty"},
		{"-1", "negative"},
		{"-5", "negative"},
		{"-1GiB", "negative"},
		{"-0.5", "negative"},
		{"1.5", "not a whole number"},
		{"0.1KiB", "not a whole number"},
		{"1.5 B", "not a whole number"},
		{"lots", "want a byte count"},
		{"NaN", "want a byte count"},
		{"1XiB", "unknown unit"},
		{"1e300", "more than 2^63-1"},
		{"9EiB", "more than 2^63-1"},
		{"8EiB", "more than 2^63-1"},
		{"9223372036854775808", "more than 2^63-1"},
		{"+Inf", "more than 2^63-1"},
	} {
		t.Run("bad/"+tc.in, func(t *testing.T) {
			n, err := bytesize.Parse(tc.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %d, want an error", tc.in, n)
			}
			if !strings.Contains(err.Error(), tc.says) || strings.Contains(err.Error(), "strconv") {
				t.Fatalf("Parse(%q): %q, want it to say %q, and nothing of strconv", tc.in, err, tc.says)
			}
		})
	}
}

func TestFormat(t *testing.T) {
	for n, want := range map[int64]string{0: "0", 1: "1", 1000: "1000", 4096: "4KiB", 64 << 10: "64KiB",
		1 << 30: "1GiB", 3 << 29: "1536MiB", 1 << 40: "1TiB", 1<<40 + 1: "1099511627777"} {
		if s := bytesize.Format(n); s != want {
			t.Errorf("Format(%d) = %q, want %q", n, s, want)
		}
		if got, err := bytesize.Parse(bytesize.Format(n)); err != nil || got != n {
			t.Errorf("Parse(Format(%d)) = %d, %v", n, got, err)
		}
	}
}
