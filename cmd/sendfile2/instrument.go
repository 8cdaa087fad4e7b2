package main

import (
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// instrument wraps h: it counts requests by status and measures their
// duration, writes the access log when accessLog is not nil, and tracks the
// handlers running in wg. A response whose body ended before its
// Content-Length (a file truncated while it was sent, a send that failed or
// was cut) is counted and logged as an error on log, with the bytes sent and
// the bytes announced, access log or not.
func instrument(h http.Handler, wg *sync.WaitGroup, m *metrics, log, accessLog *slog.Logger) http.Handler {
	errLog := log
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
			dur := time.Since(start)
			m.request(r.Method, status, dur)
			short := u == nil && r.Method != http.MethodHead && rec.announced > 0 && bytes < rec.announced
			level, msg := slog.LevelInfo, "request"
			if short {
				m.short.Inc()
				level, msg = slog.LevelError, "response cut short"
				if err == nil {
					err = io.ErrUnexpectedEOF // the file shrank: ReadFrom sent to its new end
				}
			}
			if log := accessLog; log != nil || short {
				if log == nil {
					log = errLog
				}
				attrs := []slog.Attr{
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.Int("status", status),
					slog.Int64("bytes", bytes),
					// dur=1.234ms; the JSON log adds dur_s (newLogger).
					slog.Duration("dur", dur.Round(time.Microsecond)),
					slog.String("remote", r.RemoteAddr),
					slog.String("proto", r.Proto),
					slog.String("user_agent", r.UserAgent()),
					slog.String("referer", r.Referer()),
				}
				if u != nil && u.via != "" {
					attrs = append(attrs, slog.String("via", u.via))
				}
				if short {
					attrs = append(attrs, slog.Int64("announced", rec.announced))
				}
				if rec.user != "" {
					attrs = append(attrs, slog.String("user", rec.user))
				}
				if err != nil { // ServeContent drops it: a body cut short
					attrs = append(attrs, slog.String("err", err.Error()))
				}
				log.LogAttrs(r.Context(), level, msg, attrs...)
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
	status    int
	bytes     int64
	announced int64       // the Content-Length of a response that has a body; 0: none or unknown
	err       error       // of the body's last write
	upload    *uploadNote // set by a PUT
	user      string      // authenticated with --htpasswd (auth.go)
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 && code >= 200 {
		r.status = code
		if code != http.StatusNoContent && code != http.StatusNotModified {
			r.announced, _ = strconv.ParseInt(r.Header().Get("Content-Length"), 10, 64)
		}
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

// durationSeconds, the ReplaceAttr of the JSON log, writes the access log's
// dur as text ("1.234ms") and adds dur_s, the same in seconds, for a
// program to read.
func durationSeconds(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 || a.Key != "dur" || a.Value.Kind() != slog.KindDuration {
		return a
	}
	d := a.Value.Duration()
	// A group without a key is inlined: two attributes where there was one.
	return slog.Attr{Value: slog.GroupValue(slog.String("dur", d.String()), slog.Float64("dur_s", d.Seconds()))}
}
