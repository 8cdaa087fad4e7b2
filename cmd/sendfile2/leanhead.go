package main

import (
	"io/fs"
	"net/http"
	"slices"
	"strconv"
	"sync/atomic"
	"time"
)

// headTemplate writes the response heads of the lean path (lean.go) as
// net/http writes those of fileHandler for the same request: the handler's
// headers (the --header extras, then what fileHandler, http.Error and
// http.ServeContent set, as they set them) sorted by name, then Date and,
// when net/http adds it, Content-Length. The headers that do not change
// between requests are laid out once, at start.
type headTemplate struct {
	file, notModified, fail, moved []headPart
}

// headPart is a header of a template: a value known at start, written as
// it is, or a slot filled for each response.
type headPart struct {
	static []byte // "Name: value\r\n", each value; nil for a slot
	name   string
	slot   int
}

// The values a template's slots take, by index.
const (
	slotNone = iota
	slotETag
	slotType
	slotModified
	slotLength
	slotLocation
	slots
)

// newHeadTemplate lays out the heads for the --header extras and whether
// --precompressed adds Vary.
func newHeadTemplate(extras http.Header, vary bool) *headTemplate {
	file := extras.Clone()
	if file == nil {
		file = http.Header{}
	}
	fail, moved, notModified := file.Clone(), file.Clone(), file.Clone()
	slot := func(h http.Header, name string, s int) { h[name] = []string{string(rune('0' + s))} }
	// fileHandler.ServeHTTP, precompressed and http.ServeContent.
	slot(file, "Etag", slotETag)
	slot(file, "Content-Type", slotType)
	file.Set("X-Content-Type-Options", "nosniff")
	if vary {
		file.Add("Vary", "Accept-Encoding")
	}
	slot(file, "Last-Modified", slotModified)
	file.Set("Accept-Ranges", "bytes")
	slot(file, "Content-Length", slotLength)
	// A 304 from http.ServeContent: its headers as fileHandler set them,
	// less those writeNotModified deletes (Last-Modified too: there is an
	// ETag), before Accept-Ranges is set.
	slot(notModified, "Etag", slotETag)
	notModified.Set("X-Content-Type-Options", "nosniff")
	if vary {
		notModified.Add("Vary", "Accept-Encoding")
	}
	for _, name := range []string{"Content-Type", "Content-Length", "Content-Encoding", "Last-Modified"} {
		notModified.Del(name)
	}
	// http.Error.
	fail.Del("Content-Length")
	fail.Set("Content-Type", "text/plain; charset=utf-8")
	fail.Set("X-Content-Type-Options", "nosniff")
	// redirect.
	slot(moved, "Location", slotLocation)
	slotted := map[string]bool{"Etag": true, "Content-Type": true, "Last-Modified": true, "Content-Length": true, "Location": true}
	layout := func(h http.Header, slots map[string]bool) []headPart {
		var parts []headPart
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for k := range h {
				if !yield(k) {
					return
				}
			}
		}) {
			if slots[name] && len(h[name]) == 1 && len(h[name][0]) == 1 {
				parts = append(parts, headPart{name: name, slot: int(h[name][0][0] - '0')})
				continue
			}
			var b []byte
			for _, v := range h[name] {
				b = append(append(append(append(b, name...), ": "...), v...), "\r\n"...)
			}
			parts = append(parts, headPart{static: b})
		}
		return parts
	}
	return &headTemplate{
		file:        layout(file, slotted),
		notModified: layout(notModified, slotted),
		fail:        layout(fail, nil),
		moved:       layout(moved, slotted),
	}
}

// headValues are the values of a response's slots.
type headValues [slots][]byte

// write appends to b the status line of code, the parts with vals, Date
// and, if length >= 0, a Content-Length that net/http adds, and with
// closing the Connection: close that net/http adds once it shuts down.
func writeHead(b []byte, code int, parts []headPart, vals *headValues, length int64, closing bool) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(code)...)
	b = append(b, "\r\n"...)
	for i := range parts {
		p := &parts[i]
		if p.static != nil {
			b = append(b, p.static...)
			continue
		}
		if v := vals[p.slot]; v != nil {
			b = append(append(append(append(b, p.name...), ": "...), v...), "\r\n"...)
		}
	}
	b = append(b, "Date: "...)
	b = appendDate(b, time.Now())
	b = append(b, "\r\n"...)
	if length >= 0 {
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, length, 10)
		b = append(b, "\r\n"...)
	}
	if closing {
		b = append(b, "Connection: close\r\n"...)
	}
	return append(b, "\r\n"...)
}

// fileValues fills the slots of a file's 200 into buf, and returns them
// with buf's new length: etag (fi's, appendETag), Last-Modified as
// fileHandler and http.ServeContent set it, ctype as found, the size.
func fileValues(buf, etag []byte, fi fs.FileInfo, ctype string, mod *httpTime) (headValues, []byte) {
	var v headValues
	mark := func(s int, from int) { v[s] = buf[from:len(buf):len(buf)] }
	v[slotETag] = etag
	n := len(buf)
	buf = append(buf, ctype...)
	mark(slotType, n)
	if mt := fi.ModTime(); !mt.IsZero() && !mt.Equal(time.Unix(0, 0)) {
		n = len(buf)
		buf = mod.append(buf, mt)
		mark(slotModified, n)
	}
	n = len(buf)
	buf = strconv.AppendInt(buf, fi.Size(), 10)
	mark(slotLength, n)
	return v, buf
}

// httpTime is a time in http.TimeFormat, formatted again only for another
// second: a conn's requests are often for the same file.
type httpTime struct {
	sec  int64
	text []byte
}

// append appends t in http.TimeFormat to b.
func (h *httpTime) append(b []byte, t time.Time) []byte {
	if sec := t.Unix(); h.text == nil || sec != h.sec {
		h.sec, h.text = sec, t.UTC().AppendFormat(h.text[:0], http.TimeFormat)
	}
	return append(b, h.text...)
}

// appendDate appends now in http.TimeFormat, formatted once a second.
func appendDate(b []byte, now time.Time) []byte {
	sec := now.Unix()
	if d := lastDate.Load(); d != nil && d.sec == sec {
		return append(b, d.text...)
	}
	d := &dateText{sec: sec, text: now.UTC().AppendFormat(nil, http.TimeFormat)}
	lastDate.Store(d)
	return append(b, d.text...)
}

type dateText struct {
	sec  int64
	text []byte
}

var lastDate atomic.Pointer[dateText]
