package main

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// selfSigned writes a new self-signed certificate for 127.0.0.1, and its
// key, to cert.pem and key.pem in dir, and returns the certificate.
func selfSigned(t *testing.T, dir string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "sendfile2 test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600))
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	return cert
}

// tlsClient returns a client that trusts cert, over HTTP/2 when h2, else
// HTTP/1.1.
func tlsClient(t *testing.T, cert *x509.Certificate, h2 bool) *http.Client {
	c := newClient(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	tr := c.Transport.(*http.Transport)
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	tr.ForceAttemptHTTP2 = h2
	if !h2 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return c
}

// TestServeTLS serves over HTTPS with a certificate made here: HTTP/2 and
// HTTP/1.1, whole files, ranges and uploads, with the Go client and curl;
// plain HTTP to it is refused; SIGHUP loads a new certificate.
func TestServeTLS(t *testing.T) {
	requireCurl(t)
	dir, certDir := t.TempDir(), t.TempDir()
	cert := selfSigned(t, certDir)
	data := writeRandom(t, filepath.Join(dir, "big.bin"), 4<<20+17)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.http.tlsCert, o.http.tlsKey = filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
		o.upload = true
	})
	url := "https://" + ts.addr
	for _, h2 := range []bool{true, false} {
		t.Run(fmt.Sprintf("h2=%v", h2), func(t *testing.T) {
			c := tlsClient(t, cert, h2)
			resp, body := do(t, c, "GET", url+"/big.bin")
			wantProto := map[bool]int{true: 2, false: 1}[h2]
			if resp.StatusCode != 200 || resp.ProtoMajor != wantProto || !bytes.Equal(body, data) {
				t.Fatalf("status %d, %s, %d bytes (equal: %v); want 200 over HTTP/%d and the file", resp.StatusCode, resp.Proto, len(body), bytes.Equal(body, data), wantProto)
			}
			resp, body = do(t, c, "GET", url+"/big.bin", "Range", "bytes=1000000-1999999")
			if resp.StatusCode != http.StatusPartialContent || !bytes.Equal(body, data[1000000:2000000]) {
				t.Errorf("range: status %d, %d bytes", resp.StatusCode, len(body))
			}
			up := randomData(3<<20, byte(wantProto))
			name := fmt.Sprintf("up%d.bin", wantProto)
			if resp := goPut(t, c, url+"/"+name, up, false); resp.StatusCode != http.StatusCreated {
				t.Fatalf("PUT: status %d, want 201", resp.StatusCode)
			}
			if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, up) {
				t.Errorf("the uploaded file: %d bytes (%v), differ from the body", len(got), err)
			}
		})
	}
	t.Run("curl", func(t *testing.T) {
		ca := filepath.Join(certDir, "cert.pem")
		for _, v := range []struct{ flag, want string }{{"--http2", "2"}, {"--http1.1", "1.1"}} {
			out := curl(t, "--cacert", ca, v.flag, "-o", filepath.Join(t.TempDir(), "out"), "-w", "%{http_version}", url+"/big.bin")
			if string(out) != v.want {
				t.Errorf("curl %s: HTTP version %q, want %q", v.flag, out, v.want)
			}
			if got := curl(t, "--cacert", ca, v.flag, url+"/big.bin"); !bytes.Equal(got, data) {
				t.Errorf("curl %s: %d bytes that differ from the file", v.flag, len(got))
			}
		}
	})
	t.Run("plain HTTP", func(t *testing.T) {
		resp, _ := do(t, newClient(t), "GET", ts.url+"/big.bin")
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS port: status %d, want 400", resp.StatusCode)
		}
	})
	t.Run("SIGHUP", func(t *testing.T) {
		// A renewed certificate, loaded on SIGHUP, for the next connections.
		next := selfSigned(t, certDir)
		must(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
		waitLog(t, ts, "certificate reloaded")
		conn, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true})
		must(t, err)
		defer conn.Close()
		if got := conn.ConnectionState().PeerCertificates[0].SerialNumber; got.Cmp(next.SerialNumber) != 0 {
			t.Errorf("after SIGHUP the server presents serial %v, want the new %v", got, next.SerialNumber)
		}
	})
}

// waitLog waits up to 10 s for the server's log to contain msg.
func waitLog(t *testing.T, ts *testServer, msg string) {
	t.Helper()
	for range 1000 {
		if strings.Contains(ts.log.String(), msg) {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no %q in the log after 10s:\n%s", msg, ts.log.String())
}

// TestServeNoH2C: plain HTTP stays HTTP/1.1, whose bodies reach the
// Sender: an upgrade to h2c is ignored, and HTTP/2 with prior knowledge
// gets no HTTP/2 answer.
func TestServeNoH2C(t *testing.T) {
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "a.txt"), []byte("a"), 0o644))
	ts := startServe(t, dir, nil)
	if out := curl(t, "--http2", "-o", "/dev/null", "-w", "%{http_version}", ts.url+"/a.txt"); string(out) != "1.1" {
		t.Errorf("curl --http2 (Upgrade: h2c): HTTP version %q, want 1.1", out)
	}
	conn, err := net.Dial("tcp", ts.addr)
	must(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	got, _ := io.ReadAll(bufio.NewReader(conn))
	// net/http reads the preface's first line as an HTTP/1.1 request of
	// method PRI, which serve refuses; an HTTP/2 server would have
	// answered with a SETTINGS frame.
	if !bytes.HasPrefix(got, []byte("HTTP/1.1 405 ")) {
		t.Errorf("answer to the HTTP/2 preface: %q, want an HTTP/1.1 405", got)
	}
}

func TestServeTLSBadArguments(t *testing.T) {
	dir, certDir := t.TempDir(), t.TempDir()
	selfSigned(t, certDir)
	cert, key := filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
	for _, args := range [][]string{
		{"--tls-cert", cert},
		{"--tls-key", key},
		{"--tls-cert", key, "--tls-key", cert},
		{"--tls-cert", filepath.Join(certDir, "missing.pem"), "--tls-key", key},
	} {
		args = append(append([]string{"serve", "--addr", "127.0.0.1:0"}, args...), dir)
		runRefused(t, "--tls-", args...)
	}
}

// TestServeTLSMaxStreams: over HTTP/2 the server allows h2MaxStreams
// concurrent streams per connection (SETTINGS_MAX_CONCURRENT_STREAMS), and
// the descriptor budget of a TLS connection counts that many requests.
func TestServeTLSMaxStreams(t *testing.T) {
	dir, certDir := t.TempDir(), t.TempDir()
	selfSigned(t, certDir)
	ts := startServe(t, dir, func(o *serveOptions) {
		o.http.tlsCert, o.http.tlsKey = filepath.Join(certDir, "cert.pem"), filepath.Join(certDir, "key.pem")
	})
	conn, err := tls.Dial("tcp", ts.addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	must(t, err)
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(hangBound))
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN: %q, want h2", p)
	}
	_, err = io.WriteString(conn, http2.ClientPreface)
	must(t, err)
	fr := http2.NewFramer(conn, conn)
	must(t, fr.WriteSettings())
	for {
		f, err := fr.ReadFrame()
		must(t, err)
		sf, ok := f.(*http2.SettingsFrame)
		if !ok || sf.IsAck() {
			continue
		}
		if v, ok := sf.Value(http2.SettingMaxConcurrentStreams); !ok || v != h2MaxStreams {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d (sent: %v), want %d", v, ok, h2MaxStreams)
		}
		break
	}
	for _, upload := range []bool{false, true} {
		one := fdsPerConn("copy", upload, 1)
		if got, want := fdsPerConn("copy", upload, h2MaxStreams), 1+h2MaxStreams*(one-1); got != want {
			t.Errorf("fdsPerConn with %d streams, upload %v: %d, want %d", h2MaxStreams, upload, got, want)
		}
	}
}
