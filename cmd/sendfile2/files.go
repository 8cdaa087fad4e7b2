package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/sendfile2/sendfile2"
)

// maxRanges is the most ranges a Range header may ask for: a header with
// more is ignored and the whole file served (RFC 9110 section 14.2 allows
// it; Apache's MaxRanges is 200 too). Each range is a part of a multipart
// response with its own header, seek and read: 10000 one-byte ranges, 40 KB
// of request, cost net/http about 100 ms of CPU.
const maxRanges = 200

// fileHandler serves the regular files under root, and stores PUT bodies
// there when upload is set.
type fileHandler struct {
	root           *os.Root
	upload         bool
	maxUpload      int64
	allowHardlinks bool
	sender         *sendfile2.Sender
	uploads        *uploadGroup
	browse         bool       // list a directory without index.html (browse.go)
	codings        []coding   // of the precompressed files to look for (precompressed.go)
	guard          *linkGuard // the hard-link check (hardlink.go)
	cache          *fileCache // the files open proved, kept open (opencache.go); nil: none
}

func (h *fileHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPut && h.upload {
		h.put(w, r)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		allow := "GET, HEAD"
		if h.upload {
			allow += ", PUT"
		}
		w.Header().Set("Allow", allow)
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	upath := r.URL.Path // percent-decoded once, as it should be
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath
	}
	res := h.resolve(upath)
	switch {
	case res.list != "":
		h.list(w, r, upath, res.list)
		return
	case res.notFound:
		http.NotFound(w, r)
		return
	case res.err != nil:
		httpError(w, res.err)
		return
	case res.redirect != "":
		redirect(w, r, res.redirect)
		return
	}
	defer func() { res.f.Close() }() // the file sent: res.f, or the encoded one
	f, fi, name := res.f.File, res.fi, res.name
	hdr := w.Header()
	hdr.Set("ETag", etag(fi))
	if ct := mime.TypeByExtension(path.Ext(name)); ct != "" {
		hdr.Set("Content-Type", ct)
	} // else ServeContent sniffs the first 512 bytes
	hdr.Set("X-Content-Type-Options", "nosniff")
	if ef, efi, ew := h.precompressed(w, r, name, f); ef != nil {
		// The encoded file alone is read from here on: a response holds
		// one file, as the descriptor budget (fdsPerConn) counts it.
		res.f.Close()
		res.f = ef
		f, fi, w = ef.File, efi, ew
	}
	if rng := r.Header.Get("Range"); rng != "" {
		if rng = fixRange(rng, fi.Size()); rng == "" {
			r.Header.Del("Range")
		} else {
			r.Header.Set("Range", rng)
		}
	}
	// ServeContent copies the body with io.CopyN: net/http hands the
	// reader, or an *io.LimitedReader around it, to the ReadFrom of the
	// conn that NewListener made, which sends it with the Sender, the
	// response head in the same send (sendfile2.ServeContent). An
	// io.SectionReader of the size fstat gave answers ServeContent's seeks
	// (to learn the size, to a range) without lseek(2), and reads with
	// pread(2); the conn's ReadFrom recognises it as the file.
	sendfile2.ServeContent(w, r, name, fi.ModTime(), io.NewSectionReader(f, 0, fi.Size()))
}

// resolved is what a GET or HEAD of a path resolves to: a regular file,
// open, or the answer that replaces it. Exactly one of its cases is set.
type resolved struct {
	f        *openFile // the file to serve, with its FileInfo and name in the root
	fi       fs.FileInfo
	name     string
	notFound bool   // 404, as http.NotFound answers it
	err      error  // a failed open: httpError answers it
	redirect string // 301 to this relative path (the directory with a slash)
	list     string // the directory to list (--browse)
}

// resolve resolves upath, the request's percent-decoded path, to the file
// that a GET or HEAD serves, under the rules of ServeHTTP, which the lean
// path (lean.go) shares through it.
// upath starts with a slash.
func (h *fileHandler) resolve(upath string) resolved {
	// Clean drops every ".." that would climb above "/"; the Root refuses
	// anything (symbolic links included) that would still leave it.
	name := strings.TrimPrefix(path.Clean(upath), "/")
	if name == "" {
		name = "."
	}
	if strings.HasPrefix(path.Base(name), tempPrefix) {
		return resolved{notFound: true} // an upload in progress: never serve it half written
	}
	f, fi, err := h.open(name)
	if err != nil {
		return resolved{err: err}
	}
	if fi.IsDir() {
		f.Close()
		name = path.Join(name, "index.html")
		if f, fi, err = h.open(name); err != nil {
			if h.browse && errors.Is(err, fs.ErrNotExist) {
				return resolved{list: path.Dir(name)}
			}
			return resolved{err: err}
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			return resolved{notFound: true}
		}
		if !strings.HasSuffix(upath, "/") {
			f.Close()
			// "./" and escaping keep it a path of this server: a
			// directory named "\\host" or "http:host" would otherwise
			// send a browser to another site.
			return resolved{redirect: "./" + url.PathEscape(path.Base(upath)) + "/"}
		}
	} else if !fi.Mode().IsRegular() {
		f.Close() // a FIFO, device or socket: never read from
		return resolved{notFound: true}
	}
	return resolved{f: f, fi: fi, name: name}
}

// invalidRange is a Range value that ServeContent refuses with 416.
const invalidRange = "bytes=-"

var (
	// errNotServed refuses what is neither a regular file nor a directory.
	errNotServed = errors.New("neither a regular file nor a directory")
	// errUploading refuses a name that leads, through a symbolic link, to
	// the temporary file of an upload in progress: resolve refuses the
	// temporary file's own name, the guard its other ways in (a 404 either
	// way).
	errUploading = errors.New("an upload in progress")
	// errHardLinked refuses a regular file with more than one hard link.
	errHardLinked = errors.New("a regular file with more than one hard link (see --allow-hardlinks)")
)

// open opens name under the root if it is a directory or a regular file
// (with a single hard link, as linkGuard checks it, unless allowHardlinks),
// without blocking. It looks before it opens: open(2) of a FIFO waits for a
// writer, and open(2) of a device runs its driver's open, which may act (a
// watchdog starts its timer, a tape rewinds), so neither is ever opened. What the descriptor
// itself is (fstat) decides, so that a rename between the look and the open
// changes nothing; should a FIFO take the file's place there, O_NONBLOCK
// keeps the open from waiting (it changes nothing for regular files).
// A regular file that the cache holds for name, and that the look shows
// unchanged, is taken from it instead (fileCache); a regular file opened
// and proved is put in it.
func (h *fileHandler) open(name string) (*openFile, fs.FileInfo, error) {
	if fi, err := h.root.Stat(name); err != nil {
		h.cache.forget(name) // gone: close it now
		return nil, nil, err
	} else if !fi.Mode().IsRegular() && !fi.IsDir() {
		return nil, nil, fmt.Errorf("%s (%v): %w", name, fi.Mode().Type(), errNotServed)
	} else if fi.Mode().IsRegular() {
		if f := h.cache.get(name, fi, h.allowHardlinks); f != nil {
			return f, fi, nil
		}
	}
	f, err := h.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, nil, err
	}
	fi, err := f.Stat()
	if err == nil && fi.Mode().IsRegular() && !h.allowHardlinks {
		if h.guard != nil {
			err = h.guard.check(f, fi, name)
		} else if links(fi) > 1 {
			err = fmt.Errorf("%s: %w", name, errHardLinked)
		}
	}
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	return h.cache.put(name, f, fi), fi, nil
}

// fixRange returns the Range header value that ServeContent should see for a
// file of size bytes, or "" to ignore the header. It corrects where
// net/http departs from RFC 9110 section 14, and bounds the work:
//
//   - a unit other than "bytes" (in any case) is ignored, not refused (416);
//   - on an empty file, the header is ignored: ServeContent answers a suffix
//     range there 206 with "Content-Range: bytes 0--1/0", and ignores the
//     others itself;
//   - with more than maxRanges ranges, the header is ignored;
//   - a suffix range of length 0 ("-0") is unsatisfiable and dropped
//     (ServeContent answers it 206 with "Content-Range: bytes 10-9/10");
//   - a position too large for an int64 is still a position: a last-pos
//     means the end of the file, a suffix the whole file, and a first-pos
//     makes its range unsatisfiable (ServeContent refuses all three: 416).
//
// A range outside the grammar (digits only, around one "-") makes it return
// invalidRange, which ServeContent refuses (416): its own reading is lenient
// ("-+0" is a suffix of 0). When it has dropped every range, it asks for one
// that starts at the end of the file, which ServeContent answers 416 with
// "Content-Range: bytes */size". Either way ServeContent still checks the
// request's preconditions first (If-Range).
func fixRange(h string, size int64) string {
	unit, set, ok := strings.Cut(h, "=")
	if !ok || !strings.EqualFold(unit, "bytes") || size == 0 {
		return ""
	}
	digits := func(s string) bool { return strings.Trim(s, "0123456789") == "" }
	fits := func(s string) bool { _, err := strconv.ParseInt(s, 10, 64); return err == nil }
	var specs []string
	n, dropped := 0, false
	for spec := range strings.SplitSeq(set, ",") {
		spec = strings.Trim(spec, " \t")
		if spec == "" {
			continue
		}
		if n++; n > maxRanges {
			return ""
		}
		first, last, ok := strings.Cut(spec, "-")
		first, last = strings.Trim(first, " \t"), strings.Trim(last, " \t")
		switch {
		case !ok || !digits(first) || !digits(last) || first == "" && last == "":
			return invalidRange
		case first == "" && strings.Trim(last, "0") == "":
			dropped = true
			continue
		case first == "" && !fits(last):
			spec = "0-"
		case first != "" && !fits(first):
			dropped = true
			continue
		case last != "" && !fits(last):
			spec = first + "-"
		}
		specs = append(specs, spec)
	}
	if len(specs) == 0 && dropped {
		return "bytes=" + strconv.FormatInt(size, 10) + "-"
	}
	return "bytes=" + strings.Join(specs, ",")
}

// etag is the entity tag of a file: its modification time in nanoseconds
// and its size, in hex.
func etag(fi fs.FileInfo) string {
	return string(appendETag(make([]byte, 0, 2+16+1+16+1), fi))
}

// appendETag appends the entity tag of a file to b.
func appendETag(b []byte, fi fs.FileInfo) []byte {
	b = append(b, '"')
	b = strconv.AppendInt(b, fi.ModTime().UnixNano(), 16)
	b = append(b, '-')
	b = strconv.AppendInt(b, fi.Size(), 16)
	return append(b, '"')
}

// httpError answers for a failed open. Whatever hides a file (missing, a
// path that escapes the root, a symbolic link out of it, a FIFO, device or
// socket) is 404; a file with more than one hard link is 403.
func httpError(w http.ResponseWriter, err error) {
	code := errorCode(err)
	http.Error(w, http.StatusText(code), code)
}

// errorCode is the status of httpError's answer to err.
func errorCode(err error) int {
	switch {
	case errors.Is(err, fs.ErrPermission), errors.Is(err, errHardLinked):
		return http.StatusForbidden
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOMEM):
		return http.StatusServiceUnavailable
	}
	return http.StatusNotFound
}

// redirect sends a relative redirect to target, keeping the query.
func redirect(w http.ResponseWriter, r *http.Request, target string) {
	if q := r.URL.RawQuery; q != "" {
		target += "?" + q
	}
	w.Header().Set("Location", target)
	w.WriteHeader(http.StatusMovedPermanently)
}
