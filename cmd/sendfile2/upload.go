package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"syscall"

	"github.com/sendfile2/sendfile2"
)

// tempPrefix starts the names of the temporary files that uploads write
// before renaming them into place; PUT refuses such names as targets.
const tempPrefix = sendfile2.TempPrefix

// uploadNote is what the access log says of a PUT.
type uploadNote struct {
	status int    // of the response written on a hijacked conn; 0: net/http wrote it
	stored int64  // bytes of the body written to the temporary file
	via    string // "receive" (the Sender, on the hijacked conn) or "body" (net/http's reader)
	err    error
}

// put stores the request body at the request's path, atomically, with the
// library's upload API: the body goes to a temporary file in the target's
// directory (sendfile2.CreateReplacement), received with the Sender on the
// hijacked conn when it has a Content-Length, through net/http when it is
// chunked (Sender.ReceiveBody); the file is fsynced and renamed over the
// target only when it is complete, so that readers see the old file or the
// new one, whole, and a failed upload leaves nothing behind.
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
	rp, code, err := h.prepare(r.URL.Path)
	if err != nil {
		refuse(code, err)
		return
	}
	if !h.uploads.add() {
		rp.Abort()
		refuse(http.StatusServiceUnavailable, errors.New("shutting down"))
		return
	}
	defer h.uploads.done()

	// The upload stops when serve stops waiting for uploads at shutdown.
	// (The request's context does not end before the handler returns once
	// the conn is hijacked; Receive sees the client leave by itself.)
	ctx := h.uploads.ctx
	maxSize := h.maxUpload
	if maxSize == 0 {
		maxSize = -1 // empty bodies only
	}
	body, err := h.sender.ReceiveBody(ctx, w, r, rp.File(), &sendfile2.BodyOptions{
		MaxSize: maxSize,
		// Ends a Receive on the hijacked conn if the client sends nothing
		// for --body-timeout.
		ReceiveContext: readingBody,
	})
	note.stored, note.via = body.Size, "body"
	if body.Hijacked {
		note.via = "receive"
	}
	var c sendfile2.Committed
	if err != nil {
		rp.Abort()
		code = bodyStatus(ctx, body, err)
	} else {
		c, err = rp.Commit()
		code = commitStatus(c, err)
	}
	hdr := http.Header{}
	switch {
	case err == nil:
		hdr.Set("ETag", etag(c.Info))
	case code == http.StatusRequestEntityTooLarge && !body.Hijacked:
		hdr.Set("Connection", "close") // the body stays unread
	}
	note.err = err
	if body.Hijacked {
		note.status = code
	}
	body.Reply(code, hdr)
}

// prepare checks that a PUT may write upath, as downloads read it: cleaned,
// under the root (no ".." or symbolic link out of it), in a directory that
// exists, over nothing or a regular file. It creates the temporary file, or
// returns the status that refuses the upload.
func (h *fileHandler) prepare(upath string) (*sendfile2.Replacement, int, error) {
	if !strings.HasPrefix(upath, "/") {
		upath = "/" + upath
	}
	name := strings.TrimPrefix(path.Clean(upath), "/")
	if name == "" || strings.HasSuffix(upath, "/") {
		return nil, http.StatusConflict, errors.New("the path names a directory")
	}
	if base := path.Base(name); strings.HasPrefix(base, tempPrefix) {
		return nil, http.StatusForbidden, fmt.Errorf("%q is a name for temporary files", base)
	}
	rp, err := sendfile2.CreateReplacement(h.root, name, 0o644)
	if err != nil {
		return nil, putStatus(err), err
	}
	return rp, 0, nil
}

// bodyStatus is the status of an upload whose body could not be received.
func bodyStatus(ctx context.Context, body *sendfile2.Body, err error) int {
	if body.Hijacked {
		return receiveStatus(ctx, err)
	}
	var tooLarge *http.MaxBytesError
	var pe *fs.PathError
	switch {
	case errors.As(err, &tooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.As(err, &pe): // writing the temporary file
		return putStatus(err)
	}
	return http.StatusBadRequest // reading the body: the client's
}

// commitStatus is the status of an upload after Commit: 201 Created, 204 No
// Content (a file replaced), or the failure's.
func commitStatus(c sendfile2.Committed, err error) int {
	switch {
	case err == nil && c.Replaced:
		return http.StatusNoContent
	case err == nil:
		return http.StatusCreated
	case c.Renamed: // only the directory's fsync failed
		return http.StatusInternalServerError
	}
	return putStatus(err)
}

// receiveStatus is the status of an upload whose body could not be received.
func receiveStatus(ctx context.Context, err error) int {
	switch {
	case errors.Is(err, errBodyTimeout):
		return http.StatusRequestTimeout // the connection is closed already
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
	case errors.Is(err, sendfile2.ErrNotRegular):
		return http.StatusConflict // a directory, symbolic link or FIFO at the target
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
