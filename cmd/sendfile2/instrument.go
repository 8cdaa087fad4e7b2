package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// instrument wraps h: it tracks the handlers running in wg, and hands each
// finished request to a, which counts it by status and duration and logs
// it (see accounting.finish).
func instrument(h http.Handler, wg *sync.WaitGroup, a *accounting) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wg.Add(1)
		defer wg.Done()
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		defer func() {
			e := requestLog{
				method: r.Method, status: rec.status, bytes: rec.bytes, announced: rec.announced,
				err: rec.err, user: rec.user, start: start,
			}
			if u := rec.upload; u != nil {
				e.upload = true
				// bytes: those of the request body that were stored.
				if u.status != 0 { // answered on the hijacked conn
					e.status = u.status
				}
				e.bytes, e.via = u.stored, u.via
				if u.err != nil {
					e.err = u.err
				}
			}
			if a.logs(e.short()) {
				e.path, e.remote, e.proto = r.URL.Path, r.RemoteAddr, r.Proto
				e.userAgent, e.referer = r.UserAgent(), r.Referer()
			}
			a.finish(r.Context(), e)
		}()
		h.ServeHTTP(rec, r)
	})
}

// accounting counts the requests of the file server and logs them: the
// one place for both, whether net/http or the lean path (lean.go) served
// the request.
type accounting struct {
	m              *metrics
	log, accessLog *slog.Logger // accessLog: nil when off
}

// requestLog is what accounting knows of a finished request.
type requestLog struct {
	method    string
	status    int   // 0: 200
	bytes     int64 // of the response body sent; of the request body stored for an upload
	announced int64 // the Content-Length of a response that has a body; 0: none or unknown
	err       error
	upload    bool
	start     time.Time
	// Logged only: set when logs reports true.
	path, remote, proto, userAgent, referer, via, user string
}

// short reports whether the response body ended before its Content-Length
// (a file truncated while it was sent, a send that failed or was cut).
func (e *requestLog) short() bool {
	return !e.upload && e.method != http.MethodHead && e.announced > 0 && e.bytes < e.announced
}

// logs reports whether a request is logged: always with the access log,
// else only a response cut short.
func (a *accounting) logs(short bool) bool { return a.accessLog != nil || short }

// finish counts the request e and logs it if logs says so. A response cut
// short is counted and logged as an error on log, with the bytes sent and
// the bytes announced, access log or not.
func (a *accounting) finish(ctx context.Context, e requestLog) {
	status, err := e.status, e.err
	if status == 0 {
		status = http.StatusOK
	}
	dur := time.Since(e.start)
	a.m.request(e.method, status, dur)
	short := e.short()
	level, msg := slog.LevelInfo, "request"
	if short {
		a.m.short.Inc()
		level, msg = slog.LevelError, "response cut short"
		if err == nil {
			err = io.ErrUnexpectedEOF // the file shrank: ReadFrom sent to its new end
		}
	}
	log := a.accessLog
	if log == nil {
		if !short {
			return
		}
		log = a.log
	}
	attrs := []slog.Attr{
		slog.String("method", e.method),
		slog.String("path", e.path),
		slog.Int("status", status),
		slog.Int64("bytes", e.bytes),
		// dur=1.234ms; the JSON log adds dur_s (newLogger).
		slog.Duration("dur", dur.Round(time.Microsecond)),
		slog.String("remote", e.remote),
		slog.String("proto", e.proto),
		slog.String("user_agent", e.userAgent),
		slog.String("referer", e.referer),
	}
	if e.via != "" {
		attrs = append(attrs, slog.String("via", e.via))
	}
	if short {
		attrs = append(attrs, slog.Int64("announced", e.announced))
	}
	if e.user != "" {
		attrs = append(attrs, slog.String("user", e.user))
	}
	if err != nil { // ServeContent drops it: a body cut short
		attrs = append(attrs, slog.String("err", err.Error()))
	}
	log.LogAttrs(ctx, level, msg, attrs...)
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
