// Package bytesize reads and writes the byte counts of the command's flags:
// a plain number of bytes ("1000", "1e6") or a number with a unit ("64KiB",
// "500MB", "1.5GiB"). KB, MB, GB (and k, M, G) are powers of 1000; KiB, MiB,
// GiB (and Ki, Mi, Gi) powers of 1024, as github.com/dustin/go-humanize
// reads them. A count must come out a whole, non-negative number of bytes:
// "1.5" and "0.1KiB" are errors, never truncated.
package bytesize

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"

	"github.com/dustin/go-humanize"
)

// Parse reads s as a byte count from 0 to 2^63-1. Its errors say what is
// wrong with s, for a caller to put after the flag's name.
func Parse(s string) (int64, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("empty: want a byte count such as 1000, 1e6, 64KiB, 500MB or 2GiB")
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("%s is negative: want a byte count of 0 or more", t)
	}
	n, err := strconv.ParseInt(t, 10, 64)
	switch {
	case err == nil: // digits only: exact, where float64 would round above 2^53
		return n, nil
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%s is more than 2^63-1 bytes", t)
	}
	v, err := strconv.ParseFloat(t, 64) // 1e6
	if err != nil {
		numEnd := strings.IndexFunc(t, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
		if numEnd <= 0 {
			return 0, fmt.Errorf("%q: want a byte count such as 1000, 1e6, 64KiB, 500MB or 2GiB", s)
		}
		num, err := strconv.ParseFloat(t[:numEnd], 64)
		if err != nil {
			return 0, fmt.Errorf("%q: want a byte count such as 1000, 1e6, 64KiB, 500MB or 2GiB", s)
		}
		// The unit alone, for its multiplier: go-humanize truncates
		// fractions of a byte, which are an error here.
		name := strings.TrimSpace(t[numEnd:])
		unit, err := humanize.ParseBytes("1" + name)
		if err != nil || strings.IndexFunc(name, func(r rune) bool { return !unicode.IsLetter(r) }) >= 0 {
			return 0, fmt.Errorf("%q: unknown unit %q: want B, KB, MB, GB, TB, KiB, MiB, GiB or TiB", s, name)
		}
		v = num * float64(unit)
	}
	switch {
	case math.IsNaN(v):
		return 0, fmt.Errorf("%q: want a byte count such as 1000, 1e6, 64KiB, 500MB or 2GiB", s)
	case v >= math.MaxInt64: // 2^63 as a float64
		return 0, fmt.Errorf("%s is more than 2^63-1 bytes", t)
	case v != math.Trunc(v):
		return 0, fmt.Errorf("%s is not a whole number of bytes", t)
	}
	return int64(v), nil
}

// Format writes n with the largest binary unit that divides it exactly, so
// that Parse(Format(n)) == n: 1GiB, 64KiB, 1000, 0.
func Format(n int64) string {
	for _, u := range []struct {
		name  string
		shift uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10)
}
