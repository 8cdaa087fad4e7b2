package main

import (
	"cmp"
	"fmt"
	"io"
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
// file is f) that the request accepts best, open, with its FileInfo and the
// ResponseWriter to serve it with, after it has set the response's ETag and
// Content-Type; or nil when there is none, and name's own file is served.
// Each candidate is opened as name is, under the same rules (in the root, a
// regular file, not hard-linked, never a FIFO or device): one that fails
// them is passed over as if it were absent. Vary: Accept-Encoding goes on
// either answer.
//
// The ResponseWriter adds Content-Encoding to a 200 or 206 as it is
// written: http.ServeContent leaves out Content-Length when it finds a
// Content-Encoding, and net/http then sends the body chunked, copied
// through its own buffer instead of the Sender. A request for several
// ranges of an encoded file gets all of it (RFC 9110 section 14.2 allows
// it): the Content-Encoding of a multipart/byteranges response would claim
// that the multipart body is encoded.
func (h *fileHandler) precompressed(w http.ResponseWriter, r *http.Request, name string, f *os.File) (*openFile, fs.FileInfo, http.ResponseWriter) {
	if len(h.codings) == 0 {
		return nil, nil, nil
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
		// The file's own tag, marked with its coding: it never equals the
		// tag of name, or of name's other encodings.
		hdr.Set("ETag", strings.TrimSuffix(etag(efi), `"`)+"-"+c.name+`"`)
		if _, set, _ := strings.Cut(r.Header.Get("Range"), "="); strings.Count(strings.Trim(set, " \t,"), ",") > 0 {
			r.Header.Del("Range")
		}
		return ef, efi, &encodedWriter{ResponseWriter: w, coding: c.name}
	}
	return nil, nil, nil
}

// encodedWriter sets Content-Encoding on a 200 or 206 response when its
// header is written. It keeps the ReadFrom of the ResponseWriter it wraps,
// through which the body reaches the Sender.
type encodedWriter struct {
	http.ResponseWriter
	coding string
	wrote  bool
}

func (w *encodedWriter) WriteHeader(code int) {
	if !w.wrote && (code == http.StatusOK || code == http.StatusPartialContent) {
		w.Header().Set("Content-Encoding", w.coding)
	}
	if code >= 200 {
		w.wrote = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *encodedWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *encodedWriter) ReadFrom(src io.Reader) (int64, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		return rf.ReadFrom(src)
	}
	return io.Copy(struct{ io.Writer }{w.ResponseWriter}, src)
}

// Unwrap lets http.ResponseController reach net/http's ResponseWriter.
func (w *encodedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// mustCodings is parseCodings of a list that validate has checked.
func mustCodings(list string) []coding {
	c, err := parseCodings(list)
	if err != nil {
		panic(err)
	}
	return c
}
