package bench_test

import (
	"testing"

	"github.com/sendfile2/sendfile2/cmd/sendfile2/internal/bench"
)

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
