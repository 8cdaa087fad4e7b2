package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/pflag"
)

// httpOptions are the flags of serve's HTTP features: TLS, precompressed
// files, extra headers, authentication and directory listings.
type httpOptions struct {
	tlsCert, tlsKey string
	precompressed   string     // "br,zstd,gzip"; "" is off
	headers         headerList // "Name: value"
	htpasswd        string
	authAll         bool
	uploadOpen      bool
	browse          bool
}

// defaultPrecompressed is the default of --precompressed.
const defaultPrecompressed = "br,zstd,gzip"

func (o *httpOptions) addFlags(f *pflag.FlagSet) {
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS (and HTTP/2) with this PEM certificate chain; needs --tls-key. TLS copies every body into its records: the guarantee holds, zero-copy is lost (plain HTTP is the zero-copy path)")
	f.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key of --tls-cert")
	f.StringVar(&o.precompressed, "precompressed", defaultPrecompressed, "serve NAME.br, NAME.zst, NAME.gz in place of NAME to clients that accept that encoding, from this list in order of preference (\"\": off); never compresses on the fly")
	f.Var(&o.headers, "header", "add the header 'Name: value' to every response (repeatable), such as Cache-Control or Access-Control-Allow-Origin")
	f.StringVar(&o.htpasswd, "htpasswd", "", "require HTTP Basic authentication for PUT from the users of this file (user:bcrypt-hash lines, as htpasswd -B writes them); re-read on SIGHUP")
	f.BoolVar(&o.authAll, "auth-all", false, "with --htpasswd, require authentication for every request, not only PUT")
	f.BoolVar(&o.uploadOpen, "upload-open", false, "allow --upload without --htpasswd on an address other than loopback: anyone who reaches it may write files")
	f.BoolVar(&o.browse, "browse", false, "list a directory that has no index.html (HTML, or JSON for Accept: application/json); off: 404")
}

// validateHTTP checks the flags of the HTTP features against each other and
// serve's others; the files they name are read by newHTTPFeatures.
func (o *serveOptions) validateHTTP() error {
	h := &o.http
	if (h.tlsCert == "") != (h.tlsKey == "") {
		return fmt.Errorf("--tls-cert and --tls-key go together")
	}
	if _, err := parseCodings(h.precompressed); err != nil {
		return fmt.Errorf("--precompressed %q: %w", h.precompressed, err)
	}
	if _, err := parseHeaders(h.headers); err != nil {
		return err
	}
	if h.authAll && h.htpasswd == "" {
		return fmt.Errorf("--auth-all needs --htpasswd")
	}
	if o.upload && h.htpasswd == "" && !h.uploadOpen && !loopback(o.addr) {
		return fmt.Errorf("--upload on %s, which is not a loopback address, lets anyone who reaches it write files: add --htpasswd, or --upload-open if that is intended", o.addr)
	}
	return nil
}

// checkUploadListener refuses --upload without --htpasswd or --upload-open
// on a listener that others may reach: a TCP socket on an address other
// than loopback. validateHTTP checks --addr before serve listens; this
// checks the socket itself, which systemd may have passed instead.
func (o *serveOptions) checkUploadListener(ln net.Listener) error {
	if !o.upload || o.http.htpasswd != "" || o.http.uploadOpen {
		return nil
	}
	switch a := ln.Addr().(type) {
	case *net.TCPAddr:
		if a.IP.IsLoopback() {
			return nil
		}
	case *net.UnixAddr:
		return nil // reached through the file system's permissions
	}
	return fmt.Errorf("--upload on %s, which is not a loopback address, lets anyone who reaches it write files: add --htpasswd, or --upload-open if that is intended", ln.Addr())
}

// loopback reports whether the listen address addr is on a loopback
// address only: 127.0.0.0/8, ::1 or localhost. An empty host listens on
// every address.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	host, _, _ = strings.Cut(host, "%") // a zone
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// httpFeatures is what the HTTP features' flags made: the certificate, the
// users, the headers, and the SIGHUP watch that reloads the files.
type httpFeatures struct {
	cert    *certificate   // nil: plain HTTP
	auth    *authenticator // nil: no authentication
	headers http.Header
	log     *slog.Logger
	unwatch func() // ends watch; nil when not watching
}

// newHTTPFeatures reads the files that o names: a bad one fails the start.
func newHTTPFeatures(o serveOptions, log *slog.Logger) (*httpFeatures, error) {
	hf := &httpFeatures{log: log}
	var err error
	if hf.headers, err = parseHeaders(o.http.headers); err != nil {
		return nil, err
	}
	if o.http.tlsCert != "" {
		if hf.cert, err = loadCertificate(o.http.tlsCert, o.http.tlsKey); err != nil {
			return nil, err
		}
	}
	if o.http.htpasswd != "" {
		if hf.auth, err = newAuthenticator(o.http.htpasswd, o.http.authAll); err != nil {
			return nil, err
		}
	}
	return hf, nil
}

// wrap puts the headers and the authentication around h: the headers go on
// every response, refusals included.
func (hf *httpFeatures) wrap(h http.Handler) http.Handler {
	if hf.auth != nil {
		h = hf.auth.wrap(h)
	}
	if len(hf.headers) > 0 {
		h = addHeaders(h, hf.headers)
	}
	return h
}

// serve serves srv on ln, with TLS when there is a certificate.
func (hf *httpFeatures) serve(srv *http.Server, ln net.Listener) error {
	if hf.cert == nil {
		return srv.Serve(ln)
	}
	// ServeTLS adds "h2" to the protocols ALPN offers: HTTP/2 over TLS.
	// Plain HTTP stays HTTP/1.1 (srv.Protocols offers no h2c), whose
	// bodies reach the Sender.
	srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: hf.cert.get}
	// A conn carries at most h2MaxStreams requests at once, as the
	// descriptor budget (fdsPerConn) counts them, not net/http's 250.
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: h2MaxStreams}
	// net/http's conns are now *tls.Conn over the tracker's: its hooks get
	// the conn beneath, so that --send-timeout, --body-timeout and the
	// reclaiming of idle conns hold over TLS too. sendfile2.ServeContent
	// gets no conn to hold the response head on: it goes into a record.
	if state := srv.ConnState; state != nil {
		srv.ConnState = func(c net.Conn, st http.ConnState) { state(beneathTLS(c), st) }
	}
	srv.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		if tc, ok := beneathTLS(c).(*trackedConn); ok {
			return context.WithValue(ctx, trackedKey{}, tc)
		}
		return ctx
	}
	return srv.ServeTLS(ln, "", "")
}

// beneathTLS is the conn under c when c is a TLS conn, else c.
func beneathTLS(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}

// attrs are the start log's words on the features in use.
func (hf *httpFeatures) attrs() []any {
	var a []any
	if hf.cert != nil {
		a = append(a, "tls", true)
	}
	if hf.auth != nil {
		a = append(a, "auth", hf.auth.scope())
	}
	return a
}

// watch reloads the certificate and the users on SIGHUP until stop. A file
// that fails to load leaves the old one in use, and is logged.
func (hf *httpFeatures) watch() {
	if hf.cert == nil && hf.auth == nil {
		return
	}
	hup, done, stopped := make(chan os.Signal, 1), make(chan struct{}), make(chan struct{})
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer close(stopped)
		for {
			select {
			case <-hup:
				hf.reload()
			case <-done:
				return
			}
		}
	}()
	hf.unwatch = func() {
		signal.Stop(hup)
		close(done)
		<-stopped
	}
}

// reload re-reads the certificate and the htpasswd file.
func (hf *httpFeatures) reload() {
	if hf.cert != nil {
		if err := hf.cert.reload(); err != nil {
			hf.log.Error("SIGHUP: keeping the certificate in use", "err", err)
		} else {
			hf.log.Info("SIGHUP: certificate reloaded", "cert", hf.cert.certFile)
		}
	}
	if hf.auth != nil {
		if n, err := hf.auth.reload(); err != nil {
			hf.log.Error("SIGHUP: keeping the users in use", "err", err)
		} else {
			hf.log.Info("SIGHUP: users reloaded", "htpasswd", hf.auth.file, "users", n)
		}
	}
}

// stop ends the watch, and waits for a reload in progress.
func (hf *httpFeatures) stop() {
	if hf.unwatch != nil {
		hf.unwatch()
		hf.unwatch = nil
	}
}
