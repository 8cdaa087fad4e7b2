package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sendfile2/sendfile2"
)

const (
	// replyTimeout bounds the write of a response on a hijacked upload
	// conn, whose client may have stopped reading.
	replyTimeout = 10 * time.Second
	// After a failed upload, the rest of the body that is drained before
	// the conn closes, at most (see closeUnread).
	lingerTimeout = time.Second
	lingerBytes   = 1 << 20
)

// tempPrefix starts the names of the temporary files that uploads write
// before renaming them into place; PUT refuses such names as targets.
const tempPrefix = ".sendfile2-upload-"

// uploadNote is what the access log says of a PUT.
type uploadNote struct {
	status int    // of the response written on a hijacked conn; 0: net/http wrote it
	stored int64  // bytes of the body written to the temporary file
	via    string // "receive" (the Sender, on the hijacked conn) or "body" (net/http's reader)
	err    error
}

// put stores the request body at the request's path, atomically: the body
// goes to a temporary file in the target's directory, which is fsynced and
// renamed over the target only when it is complete, so that readers see the
// old file or the new one, whole, and a failed upload leaves nothing behind.
//
// A body with a Content-Length is received with the Sender: put hijacks the
// conn, writes the bytes net/http has already buffered, then calls Receive
// for the rest, answers itself and closes the conn. A chunked body (no
// Content-Length) is read through net/http instead, which decodes the chunks.
func (h *fileHandler) put(w http.ResponseWriter, r *http.Request) {
	note := &uploadNote{}
	if rec, ok := w.(*recorder); ok {
		rec.upload = note
	}
	refuse := func(code int, err error) {
		note.err = err
		if code == http.StatusRequestEntityTooLarge {
			w.Header().Set("Connection", "close") // the body stays unread
		}
		http.Error(w, http.StatusText(code), code)
	}
	if r.Header.Get("Content-Range") != "" {
		// Partial PUT is not supported; RFC 9110 section 14.5 says to refuse it.
		refuse(http.StatusBadRequest, errors.New("Content-Range in a PUT"))
		return
	}
	if r.ContentLength > h.maxUpload {
		refuse(http.StatusRequestEntityTooLarge, fmt.Errorf("Content-Length %d over --max-upload %d", r.ContentLength, h.maxUpload))
		return
	}
	u, code, err := h.prepare(r.URL.Path)
	if err != nil {
		refuse(code, err)
		return
	}
	defer u.dir.Close()
	if !h.uploads.add() {
		u.abort()
		refuse(http.StatusServiceUnavailable, errors.New("shutting down"))
		return
	}
	defer h.uploads.done()
	u.note = note

	if r.ContentLength > 0 {
		conn, brw, err := http.NewResponseController(w).Hijack()
		if err == nil {
			note.via = "receive"
			h.receive(r, conn, brw.Reader, u)
			return
		}
		// Not HTTP/1 (HTTP/2 cannot hijack): read the body through net/http.
	}
	note.via = "body"
	n, err := io.Copy(u.tmp, http.MaxBytesReader(w, r.Body, h.maxUpload))
	note.stored = n
	if err != nil {
		u.abort()
		var tooLarge *http.MaxBytesError
		var pe *fs.PathError
		switch {
		case errors.As(err, &tooLarge):
			code = http.StatusRequestEntityTooLarge
		case errors.As(err, &pe): // writing the temporary file
			code = putStatus(err)
		default: // reading the body: the client's
			code = http.StatusBadRequest
		}
		refuse(code, err)
		return
	}
	code, tag, err := u.commit()
	if err != nil {
		refuse(code, err)
		return
	}
	w.Header().Set("ETag", tag)
	w.WriteHeader(code)
}

// upload is a PUT in progress: its temporary file, in the target's directory.
type upload struct {
	dir     *os.Root // the target's directory, under the root
	name    string   // the target's name in dir
	tmp     *os.File // the temporary file, open for writing
	tmpName string   // its name in dir
	note    *uploadNote
}

// prepare checks that a PUT may write upath, as downloads read it: cleaned,
// under the root (no ".." or symbolic link out of it), in a directory that
// exists, over nothing or a regular file. It creates the temporary file, or
// returns the status that refuses the upload.
func (h *fileHandler) prepare(upath string) (*upload, int, error) {
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath
	}
	name := strings.TrimPrefix(path.Clean(upath), "/")
	if name == "" || strings.HasSuffix(upath, "/") {
		return nil, http.StatusConflict, errors.New("the path names a directory")
	}
	dirName, base := path.Split(name)
	if strings.HasPrefix(base, tempPrefix) {
		return nil, http.StatusForbidden, fmt.Errorf("%q is a name for temporary files", base)
	}
	if dirName == "" {
		dirName = "."
	}
	// The directory, opened once, holds the temporary file and the rename:
	// a concurrent rename of a parent cannot split them.
	dir, err := h.root.OpenRoot(dirName)
	if err != nil {
		return nil, putStatus(err), err
	}
	if fi, err := dir.Lstat(base); err == nil && !fi.Mode().IsRegular() {
		dir.Close()
		return nil, http.StatusConflict, fmt.Errorf("%s is not a regular file (%v)", name, fi.Mode())
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		dir.Close()
		return nil, putStatus(err), err
	}
	for range 100 {
		tmpName := fmt.Sprintf("%s%016x", tempPrefix, rand.Uint64())
		f, err := dir.OpenFile(tmpName, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		if err != nil {
			dir.Close()
			return nil, putStatus(err), err
		}
		return &upload{dir: dir, name: base, tmp: f, tmpName: tmpName}, 0, nil
	}
	dir.Close()
	return nil, http.StatusInternalServerError, errors.New("no free name for a temporary file")
}

// abort closes and removes the temporary file.
func (u *upload) abort() {
	u.tmp.Close()
	u.dir.Remove(u.tmpName)
}

// commit makes the complete temporary file the target: fsync(2), so that
// the rename can never expose a file whose data a crash lost, the rename,
// then fsync(2) of the directory, so that the response means the upload
// survives a crash. It returns 201 Created or 204 No Content (a file
// replaced) and the new file's ETag, or the status of a failure, after which
// the target is the old file (unless only the directory's fsync failed).
func (u *upload) commit() (int, string, error) {
	err := u.tmp.Sync()
	var fi fs.FileInfo
	if err == nil {
		fi, err = u.tmp.Stat()
	}
	if err != nil {
		u.abort()
		return putStatus(err), "", err
	}
	if err := u.tmp.Close(); err != nil {
		u.dir.Remove(u.tmpName)
		return putStatus(err), "", err
	}
	code := http.StatusCreated
	if old, err := u.dir.Lstat(u.name); err == nil {
		if !old.Mode().IsRegular() { // changed since prepare
			u.dir.Remove(u.tmpName)
			return http.StatusConflict, "", fmt.Errorf("%s is not a regular file (%v)", u.name, old.Mode())
		}
		code = http.StatusNoContent
	}
	if err := u.dir.Rename(u.tmpName, u.name); err != nil {
		u.dir.Remove(u.tmpName)
		return putStatus(err), "", err
	}
	d, err := u.dir.Open(".")
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil {
		return http.StatusInternalServerError, "", fmt.Errorf("fsync of the directory after the rename: %w", err)
	}
	return code, etag(fi), nil
}

// receive reads the body of r, of r.ContentLength bytes, from the hijacked
// conn into u's temporary file (the bytes br holds already, then the rest
// with the Sender's Receive), commits it, answers and closes the conn.
func (h *fileHandler) receive(r *http.Request, conn net.Conn, br *bufio.Reader, u *upload) {
	// The upload stops when serve stops waiting for uploads at shutdown.
	// (The request's context does not end before the handler returns once
	// the conn is hijacked; Receive sees the client leave by itself.)
	ctx := h.uploads.ctx
	size := r.ContentLength
	var err error
	if expectsContinue(r) {
		// net/http would send it at the body's first read; we read the
		// socket ourselves.
		conn.SetWriteDeadline(time.Now().Add(replyTimeout))
		_, err = io.WriteString(conn, "HTTP/1.1 100 Continue\r\n\r\n")
	}
	var n int64
	if err == nil {
		// The start of the body, which net/http read along with the header.
		p, _ := br.Peek(int(min(int64(br.Buffered()), size)))
		var k int
		k, err = u.tmp.WriteAt(p, 0)
		n = int64(k)
	}
	if err == nil && n < size {
		var k int64
		if sc, ok := conn.(syscall.Conn); ok {
			k, err = h.sender.Receive(ctx, sc, u.tmp, n, size-n)
		} else { // a conn without a descriptor: copy
			k, err = io.Copy(io.NewOffsetWriter(u.tmp, n), io.LimitReader(conn, size-n))
			if err == nil && k < size-n {
				err = io.ErrUnexpectedEOF
			}
		}
		n += k
	}
	u.note.stored = n
	if err != nil {
		u.abort()
		code := receiveStatus(ctx, err)
		u.note.status, u.note.err = code, err
		reply(conn, code, "")
		closeUnread(conn)
		return
	}
	code, tag, err := u.commit()
	u.note.status, u.note.err = code, err
	reply(conn, code, tag)
	conn.Close()
}

// expectsContinue reports whether the client waits for "100 Continue"
// before it sends the body, as net/http decides it.
func expectsContinue(r *http.Request) bool {
	if !r.ProtoAtLeast(1, 1) {
		return false
	}
	for _, v := range r.Header.Values("Expect") {
		for tok := range strings.SplitSeq(v, ",") {
			// Optional whitespace around list elements is spaces and tabs
			// only (RFC 9110, section 5.6.1).
			if strings.EqualFold(strings.Trim(tok, " \t"), "100-continue") {
				return true
			}
		}
	}
	return false
}

// receiveStatus is the status of an upload whose body could not be received.
func receiveStatus(ctx context.Context, err error) int {
	switch {
	case ctx.Err() != nil, errors.Is(err, sendfile2.ErrClosed):
		return http.StatusServiceUnavailable // shutting down
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.ETIMEDOUT),
		errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ENOTCONN):
		return http.StatusBadRequest // the client ended the body early
	}
	return putStatus(err)
}

// putStatus is the status of a PUT that failed on the file system with err.
func putStatus(err error) int {
	var errno syscall.Errno
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		return http.StatusConflict // no such parent directory, or a file in its place
	case errors.Is(err, syscall.EISDIR), errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOTEMPTY):
		return http.StatusConflict // the target is a directory
	case errors.Is(err, fs.ErrPermission), errors.Is(err, syscall.EROFS), errors.Is(err, syscall.ELOOP):
		return http.StatusForbidden
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return http.StatusInsufficientStorage
	case errors.Is(err, syscall.EMFILE), errors.Is(err, syscall.ENFILE), errors.Is(err, syscall.ENOMEM):
		return http.StatusServiceUnavailable
	case errors.Is(err, syscall.EINVAL), errors.Is(err, syscall.ENAMETOOLONG):
		return http.StatusBadRequest // a name the file system refuses (NUL, too long)
	case !errors.As(err, &errno):
		return http.StatusForbidden // the root refused the path: it leaves DIR
	}
	return http.StatusInternalServerError
}

// reply writes a response without a body (or with its status text for an
// error) on a hijacked conn, which closes after it. 204 carries no
// Content-Length (RFC 9110 section 8.6).
func reply(conn net.Conn, code int, tag string) error {
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP/1.1 %d %s\r\nDate: %s\r\n", code, http.StatusText(code), time.Now().UTC().Format(http.TimeFormat))
	body := ""
	if code >= 400 {
		body = http.StatusText(code) + "\n"
		b.WriteString("Content-Type: text/plain; charset=utf-8\r\nX-Content-Type-Options: nosniff\r\n")
	}
	if tag != "" {
		fmt.Fprintf(&b, "ETag: %s\r\n", tag)
	}
	if code != http.StatusNoContent {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(body)
	conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err := io.WriteString(conn, b.String())
	return err
}

// closeUnread closes a hijacked conn whose request body may not have been
// read to its end. A socket closed with unread bytes resets the connection,
// which can destroy the response before the client reads it (net/http's
// closeWriteAndWait avoids the same): shut down the sending side first, then
// drain what the client still sends, for a bounded time and size.
func closeUnread(conn net.Conn) {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok && cw.CloseWrite() == nil {
		conn.SetReadDeadline(time.Now().Add(lingerTimeout))
		io.CopyN(io.Discard, conn, lingerBytes)
	}
	conn.Close()
}

// uploadGroup tracks the uploads in flight. http.Server.Shutdown neither
// waits for nor closes hijacked conns, so serve waits for them itself, and
// cancels ctx when it stops waiting: the uploads still running then fail, and
// later ones are refused.
type uploadGroup struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	n      int
	idle   chan struct{} // closed when n drops to 0, while someone waits
}

func newUploadGroup() *uploadGroup {
	g := &uploadGroup{}
	g.ctx, g.cancel = context.WithCancelCause(context.Background())
	return g
}

// add counts an upload in, unless ctx has ended.
func (g *uploadGroup) add() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return false
	}
	g.n++
	return true
}

func (g *uploadGroup) done() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n--; g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// wait waits until no upload runs, or until ctx ends.
func (g *uploadGroup) wait(ctx context.Context) error {
	g.mu.Lock()
	if g.n == 0 {
		g.mu.Unlock()
		return nil
	}
	if g.idle == nil {
		g.idle = make(chan struct{})
	}
	idle := g.idle
	g.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
