package main

import (
	"cmp"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
)

// coding is a content coding that --precompressed may name, and the
// extension of the files that hold it.
type coding struct {
	name string // as in Content-Encoding
	ext  string
}

var codings = []coding{{"br", ".br"}, {"zstd", ".zst"}, {"gzip", ".gz"}}

// parseCodings parses the value of --precompressed: coding names separated
// by commas, in the server's order of preference; "" is none.
func parseCodings(list string) ([]coding, error) {
	var out []coding
	if strings.TrimSpace(list) == "" {
		return nil, nil
	}
	for name := range strings.SplitSeq(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		i := slices.IndexFunc(codings, func(c coding) bool { return c.name == name })
		switch {
		case i < 0:
			return nil, fmt.Errorf("%q: want br, zstd or gzip, separated by commas", name)
		case slices.Contains(out, codings[i]):
			return nil, fmt.Errorf("%s named twice", name)
		}
		out = append(out, codings[i])
	}
	return out, nil
}

// acceptable returns the codings of offered that the Accept-Encoding
// values accept, best first: by the client's quality, then in the order of
// offered. A coding is accepted by its own element or by "*" with a quality
// above 0 ("x-gzip" is "gzip", RFC 9110 section 8.4.1.3), and only if the
// client did not give identity a higher quality: "gzip;q=0.5, identity"
// prefers the file itself. No Accept-Encoding accepts none.
func acceptable(values []string, offered []coding) []coding {
	ws := parseWeighted(values)
	for i := range ws {
		if ws[i].value == "x-gzip" {
			ws[i].value = "gzip"
		}
	}
	identity := quality(ws, "identity")
	var out []coding
	for _, c := range offered {
		if q := quality(ws, c.name, "*"); q > 0 && q >= identity {
			out = append(out, c)
		}
	}
	slices.SortStableFunc(out, func(a, b coding) int {
		return cmp.Compare(quality(ws, b.name, "*"), quality(ws, a.name, "*"))
	})
	return out
}

// precompressed returns the file that holds the encoded form of name (whose
// file is f) that the request accepts best, open, with its FileInfo, after
// it has set the response's Content-Encoding, ETag and Content-Type; or nil
// when there is none, and name's own file is served. Each candidate is
// opened as name is, under the same rules (in the root, a regular file,
// not hard-linked, never a FIFO or device): one that fails them is passed
// over as if it were absent. Vary: Accept-Encoding goes on either answer.
func (h *fileHandler) precompressed(w http.ResponseWriter, r *http.Request, name string, f *os.File) (*os.File, fs.FileInfo) {
	if len(h.codings) == 0 {
		return nil, nil
	}
	hdr := w.Header()
	hdr.Add("Vary", "Accept-Encoding")
	for _, c := range acceptable(r.Header.Values("Accept-Encoding"), h.codings) {
		ef, efi, err := h.open(name + c.ext)
		if err != nil {
			continue
		}
		if !efi.Mode().IsRegular() {
			ef.Close()
			continue
		}
		if hdr.Get("Content-Type") == "" {
			// What ServeContent would sniff from name, not from its encoding.
			var buf [512]byte
			n, _ := f.ReadAt(buf[:], 0)
			hdr.Set("Content-Type", http.DetectContentType(buf[:n]))
		}
		hdr.Set("Content-Encoding", c.name)
		// The file's own tag, marked with its coding: it never equals the
		// tag of name, or of name's other encodings.
		hdr.Set("ETag", strings.TrimSuffix(etag(efi), `"`)+"-"+c.name+`"`)
		return ef, efi
	}
	return nil, nil
}

// mustCodings is parseCodings of a list that validate has checked.
func mustCodings(list string) []coding {
	c, err := parseCodings(list)
	if err != nil {
		panic(err)
	}
	return c
}
