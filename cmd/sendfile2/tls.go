package main

import (
	"crypto/tls"
	"fmt"
	"sync/atomic"
)

// certificate is the certificate and key that --tls-cert and --tls-key
// name, reloaded on SIGHUP: a renewed certificate takes effect for the
// connections that come after, without a restart.
//
// HTTPS costs the zero-copy path: crypto/tls encrypts each body into
// records of its own, so net/http writes the body through the tls.Conn and
// the Sender never sees it. Nothing references the file once the write
// returns, so the guarantee holds; the speed is TLS's. Plain HTTP behind a
// TLS-terminating proxy or CDN keeps zero-copy.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func loadCertificate(certFile, keyFile string) (*certificate, error) {
	c := &certificate{certFile: certFile, keyFile: keyFile}
	if err := c.reload(); err != nil {
		return nil, err
	}
	return c, nil
}

// reload reads the files again; on failure the certificate in use stays.
func (c *certificate) reload() error {
	kp, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return fmt.Errorf("--tls-cert %s, --tls-key %s: %w", c.certFile, c.keyFile, err)
	}
	c.cur.Store(&kp)
	return nil
}

// get is tls.Config.GetCertificate.
func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }
