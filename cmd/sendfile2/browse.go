package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"html/template"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxListEntries bounds the entries of a directory that a listing reads
// (and stats): past it, the listing shows those it read and says it was
// cut. A variable for the tests.
var maxListEntries = 10000

// listEntry is one entry of a directory listing.
type listEntry struct {
	Name  string    `json:"name"` // as the file system has it; JSON and HTML show each byte that is not UTF-8 as U+FFFD
	Href  string    `json:"href"` // relative link to it, percent-encoded from the name's bytes
	Dir   bool      `json:"dir"`
	Size  int64     `json:"size"` // bytes; 0 for directories
	MTime time.Time `json:"mtime"`
}

// list answers a request for the directory dir (a name in the root; upath
// the request's path) that has no index.html with a listing of it: HTML,
// or JSON when the request's Accept prefers application/json. It lists
// what a GET would serve: directories, and the regular files that pass the
// rules (not hard-linked unless --allow-hardlinks; symbolic links that stay
// in the root, as what they point to), by name, directories first. FIFOs,
// devices, sockets, links out of the root and uploads in progress are left
// out. Only the first maxListEntries entries read (in the directory's
// order) are considered; past them the listing says it was cut. Every name is escaped (html/template) and every link percent-encoded,
// so a hostile name shows as text and links to itself.
func (h *fileHandler) list(w http.ResponseWriter, r *http.Request, upath, dir string) {
	if !strings.HasSuffix(upath, "/") {
		// Percent-encoded, so that a name with "?", "#" or "%" leads back
		// to itself; "./" first, so that "a:b" is no URL scheme.
		redirect(w, r, "./"+url.PathEscape(path.Base(upath))+"/")
		return
	}
	d, err := h.root.Open(dir)
	if err != nil {
		httpError(w, err)
		return
	}
	// One more than the bound, to know whether there are more.
	ents, err := d.ReadDir(maxListEntries + 1)
	d.Close()
	if err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty directory
		httpError(w, err)
		return
	}
	truncated := len(ents) > maxListEntries
	if truncated {
		ents = ents[:maxListEntries]
	}
	list := []listEntry{} // [] in JSON when empty
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, tempPrefix) {
			continue
		}
		fi, err := h.root.Stat(path.Join(dir, name)) // follows links, in the root only
		if err != nil || !fi.IsDir() && (!fi.Mode().IsRegular() || !h.allowHardlinks && links(fi) > 1) {
			continue
		}
		if e.Type()&fs.ModeSymlink != 0 && fi.Mode().IsRegular() && h.leadsToUpload(path.Join(dir, name)) {
			continue
		}
		le := listEntry{Name: name, Href: "./" + url.PathEscape(name), Dir: fi.IsDir(), MTime: fi.ModTime().UTC()}
		if le.Dir {
			le.Href += "/"
		} else {
			le.Size = fi.Size()
		}
		list = append(list, le)
	}
	slices.SortFunc(list, func(a, b listEntry) int {
		if a.Dir != b.Dir {
			if a.Dir {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Name, b.Name)
	})

	var body bytes.Buffer
	hdr := w.Header()
	hdr.Add("Vary", "Accept")
	if wantsJSON(r.Header.Values("Accept")) {
		hdr.Set("Content-Type", "application/json")
		err = json.NewEncoder(&body).Encode(struct {
			Path      string      `json:"path"`
			Entries   []listEntry `json:"entries"`
			Truncated bool        `json:"truncated"` // the directory has more entries than were read
		}{upath, list, truncated})
	} else {
		hdr.Set("Content-Type", "text/html; charset=utf-8")
		// No script, style in the page only, nothing loaded: should a name
		// ever get through unescaped, it still could not run.
		hdr.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
		err = listingPage.Execute(&body, struct {
			Path      string
			Parent    bool
			Entries   []listEntry
			Truncated int
		}{validUTF8(upath), upath != "/", list, map[bool]int{true: maxListEntries}[truncated]})
	}
	if err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Content-Length", strconv.Itoa(body.Len()))
	if r.Method != http.MethodHead {
		w.Write(body.Bytes())
	}
}

// wantsJSON reports whether Accept prefers application/json to HTML: it
// names application/json (or application/*) with a quality above 0 and at
// least that of text/html (or text/*, else */*).
func wantsJSON(accept []string) bool {
	ws := parseWeighted(accept)
	j := quality(ws, "application/json", "application/*")
	return j > 0 && j >= quality(ws, "text/html", "text/*", "*/*")
}

var listingPage = template.Must(template.New("listing").Funcs(template.FuncMap{
	"text": validUTF8,
	"time": func(t time.Time) string { return t.Format("2006-01-02 15:04:05") },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Index of {{.Path}}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; }
table { border-collapse: collapse; }
th, td { padding: 0.2em 1em 0.2em 0; text-align: left; vertical-align: top; }
td.name { white-space: pre-wrap; overflow-wrap: anywhere; }
td.size { text-align: right; }
</style>
</head>
<body>
<h1>Index of {{.Path}}</h1>
<table>
<thead><tr><th>Name</th><th>Size (bytes)</th><th>Modified (UTC)</th></tr></thead>
<tbody>
{{- if .Parent}}
<tr><td><a href="../">../</a></td><td></td><td></td></tr>
{{- end}}
{{- range .Entries}}
<tr class="{{if .Dir}}dir{{else}}file{{end}}"><td class="name"><a href="{{.Href}}">{{text .Name}}{{if .Dir}}/{{end}}</a></td><td class="size">{{if not .Dir}}{{.Size}}{{end}}</td><td><time datetime="{{.MTime.Format "2006-01-02T15:04:05Z"}}">{{time .MTime}}</time></td></tr>
{{- end}}
</tbody>
</table>
{{- if .Truncated}}
<p>The listing was cut: the directory has more than {{.Truncated}} entries, and only the first {{.Truncated}} read were considered.</p>
{{- end}}
</body>
</html>
`))

// validUTF8 replaces each byte of s that is not UTF-8 with U+FFFD, as
// encoding/json does.
func validUTF8(s string) string { return string([]rune(s)) }
