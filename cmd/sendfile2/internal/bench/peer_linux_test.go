package bench

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"testing"
)

// TestPeerListensTCP checks that the receiver takes plain TCP connections
// even from a client that offers MPTCP: a socket accepted by an MPTCP
// listener receives through MPTCP's layer, which the bench does not measure.
func TestPeerListensTCP(t *testing.T) {
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- servePeer(peerSpec{Addr: "127.0.0.1:0", Mode: Discard}, inR, outW)
		outW.Close()
	}()
	sc := bufio.NewScanner(outR)
	if !sc.Scan() {
		t.Fatalf("no address from the peer: %v", sc.Err())
	}
	var msg peerMsg
	if err := json.Unmarshal(sc.Bytes(), &msg); err != nil || msg.Error != "" {
		t.Fatalf("peer: %q: %v", sc.Text(), err)
	}
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", msg.Addr)
	if err != nil {
		t.Fatal(err)
	}
	mptcp, merr := c.(*net.TCPConn).MultipathTCP()
	c.Close()
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if merr != nil {
		t.Fatal(merr)
	}
	if mptcp {
		t.Fatal("the receiver accepted an MPTCP connection")
	}
	// Whether the test can tell: a client offering MPTCP to a listener that
	// takes it gets it, if this kernel has MPTCP on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if a, err := ln.Accept(); err == nil {
			a.Close()
		}
	}()
	c, err = d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if on, _ := c.(*net.TCPConn).MultipathTCP(); !on {
		t.Skip("MPTCP is off on this kernel (net.mptcp.enabled): the check above proves nothing")
	}
}
