package main

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"
)

// FuzzAcceptable checks the choice of a precompressed file against
// Accept-Encoding: only offered codings, each once; none that the field
// refuses with q=0 or gives a quality below identity's; best first.
func FuzzAcceptable(f *testing.F) {
	for _, s := range []string{"", "gzip", "br;q=0.5, gzip", "*", "*;q=0, gzip", "br;q=0", "gzip;q=0.5, identity",
		"x-gzip", "GZIP;Q=1.000", "gzip;q=1.5", "gzip;q=", "br;level=3;q=0.2,zstd;q=0.200", " , ;q=1,", "identity;q=0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, field string) {
		got := acceptable([]string{field}, codings)
		ws := parseWeighted([]string{field})
		for i := range ws {
			if ws[i].value == "x-gzip" {
				ws[i].value = "gzip"
			}
			if ws[i].q < 0 || ws[i].q > 1000 {
				t.Fatalf("%q: quality %d", field, ws[i].q)
			}
		}
		q := func(c coding) int { return quality(ws, c.name, "*") }
		for i, c := range got {
			if !slices.Contains(codings, c) || slices.Index(got, c) != i {
				t.Fatalf("%q: %v: %v not offered, or twice", field, got, c)
			}
			if q(c) <= 0 || q(c) < quality(ws, "identity") {
				t.Fatalf("%q: %v: %s has quality %d, identity %d", field, got, c.name, q(c), quality(ws, "identity"))
			}
			if i > 0 && q(got[i-1]) < q(c) {
				t.Fatalf("%q: %v: not best first", field, got)
			}
		}
		if !strings.Contains(strings.ToLower(field), "gzip") && !strings.Contains(field, "*") && slices.ContainsFunc(got, func(c coding) bool { return c.name == "gzip" }) {
			t.Fatalf("%q: gzip chosen unasked", field)
		}
	})
}

// FuzzParseHtpasswd: any file parses or fails without a panic, and every
// user it accepts has a bcrypt hash.
func FuzzParseHtpasswd(f *testing.F) {
	f.Add("alice:$2y$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE\n")
	f.Add("# c\n\nbob:$2a$04$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyzABCDE\r\n")
	f.Add("alice:$apr1$x$y\n")
	f.Add(":\n")
	f.Fuzz(func(t *testing.T, file string) {
		hashes, cost, err := parseHtpasswd([]byte(file))
		if err != nil {
			return
		}
		if len(hashes) == 0 || cost < bcrypt.MinCost || cost > maxCost {
			t.Fatalf("%q: %d users, cost %d", file, len(hashes), cost)
		}
		for user, hash := range hashes {
			c, err := bcrypt.Cost(hash)
			if user == "" || strings.ContainsAny(user, ":\n") || err != nil || c > cost {
				t.Fatalf("%q: user %q, hash %q (cost %d, %v)", file, user, hash, c, err)
			}
		}
	})
}
