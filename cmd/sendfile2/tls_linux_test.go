package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"path/filepath"
	"testing"
	"time"
)

// TestServeTLSStall: the limits on stalled clients hold over TLS: a client
// that asks for a large file and never reads is cut after --send-timeout,
// and the time limits see the conn beneath the TLS one.
func TestServeTLSStall(t *testing.T) {
	dir, certDir := t.TempDir(), t.TempDir()
	cert := selfSigned(t, certDir)
	writeRandom(t, filepath.Join(dir, "big.bin"), 32<<20)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.http.tlsCert, o.http.tlsKey = filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
		o.sendTimeout = stallSendTimeout
	})
	raw, err := dialSmall(ts.addr)
	must(t, err)
	defer raw.Close()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	c := tls.Client(raw, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}})
	must(t, c.Handshake())
	if _, err := io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: test\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	s := &staller{kind: &stallKinds[0], conn: raw, stalled: time.Now()}
	if err := waitCut([]*staller{s}, time.Now().Add(stallSendTimeout+20*time.Second)); err != nil {
		t.Fatalf("a TLS client that never reads: %v", err)
	}
	t.Logf("cut %v after it stalled", s.cut)
	waitLog(t, ts, limitSend)
}
