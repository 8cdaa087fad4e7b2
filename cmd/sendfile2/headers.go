package main

import (
	"fmt"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// managedHeaders are set by serve itself, from the file and the request:
// --header refuses them, since a fixed value would misdescribe a response
// (its length, its encoding, its range) or break the connection's framing.
var managedHeaders = []string{
	"Connection", "Content-Encoding", "Content-Length", "Content-Range", "Content-Type",
	"Date", "ETag", "Keep-Alive", "Last-Modified", "Location", "Proxy-Connection",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "WWW-Authenticate",
}

// parseHeaders parses the values of --header, "Name: value" each. A name
// that is not an HTTP token, a value with a control character (a CR or LF
// would start another header), or a header that serve manages is refused.
func parseHeaders(lines []string) (http.Header, error) {
	h := http.Header{}
	for _, line := range lines {
		name, value, ok := strings.Cut(line, ":")
		value = strings.Trim(value, " \t")
		switch {
		case !ok:
			return nil, fmt.Errorf("--header %q: want 'Name: value'", line)
		case !httpguts.ValidHeaderFieldName(name):
			return nil, fmt.Errorf("--header %q: %q is not a header name", line, name)
		case !httpguts.ValidHeaderFieldValue(value):
			return nil, fmt.Errorf("--header %q: the value has a control character", line)
		}
		for _, m := range managedHeaders {
			if strings.EqualFold(name, m) {
				return nil, fmt.Errorf("--header %q: serve sets %s itself", line, m)
			}
		}
		h.Add(name, value)
	}
	return h, nil
}

// headerList is the value of --header, repeatable: each line is checked
// as it is given.
type headerList []string

func (l *headerList) Set(line string) error {
	if _, err := parseHeaders([]string{line}); err != nil {
		return err
	}
	*l = append(*l, line)
	return nil
}

func (l *headerList) String() string { return strings.Join(*l, "; ") }
func (l *headerList) Type() string   { return "'Name: value'" }

// addHeaders adds hdr to every response of h, before h runs: h may still
// set a header of the same name (X-Content-Type-Options) or add to it (Vary).
func addHeaders(h http.Handler, hdr http.Header) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wh := w.Header()
		for k, vs := range hdr {
			wh[k] = append(wh[k], vs...)
		}
		h.ServeHTTP(w, r)
	})
}
