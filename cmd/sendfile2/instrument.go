package main

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// instrument wraps h: it counts requests by status, writes the access log
// when log is not nil, and tracks the handlers running in wg.
func instrument(h http.Handler, wg *sync.WaitGroup, m *metrics, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			status, bytes, err := rec.status, rec.bytes, rec.err
			u := rec.upload
			if u != nil {
				// bytes: those of the request body that were stored.
				if u.status != 0 { // answered on the hijacked conn
					status = u.status
				}
				bytes = u.stored
				if u.err != nil {
					err = u.err
				}
			}
			if status == 0 {
				status = http.StatusOK
			}
			m.requests.WithLabelValues(strconv.Itoa(status)).Inc()
			if log != nil {
				attrs := []slog.Attr{
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Int64("bytes", bytes),
					slog.Duration("duration", time.Since(start)),
					slog.String("remote", r.RemoteAddr),
					slog.String("proto", r.Proto),
				}
				if u != nil && u.via != "" {
					attrs = append(attrs, slog.String("via", u.via))
				}
				if err != nil { // ServeContent drops it: a body cut short
					attrs = append(attrs, slog.String("err", err.Error()))
				}
				log.LogAttrs(r.Context(), slog.LevelInfo, "request", attrs...)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

// recorder notes the status and body bytes of a response. It keeps the
// ReadFrom of net/http's ResponseWriter visible: without it, io.Copy would
// push the file through a buffer and never reach the Sender.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
	err    error       // of the body's last write
	upload *uploadNote // set by a PUT
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	if err != nil {
		r.err = err
	}
	return n, err
}

func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(src)
	} else {
		n, err = io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	}
	r.bytes += n
	if err != nil {
		r.err = err
	}
	return n, err
}

// Unwrap lets http.ResponseController reach net/http's ResponseWriter.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
