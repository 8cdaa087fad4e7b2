package peer_test

import (
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/sendfile2/sendfile2/internal/peer"
)

// request is a request of the peer protocol: op, token and the first
// argument.
func request(op byte, token []byte, arg uint64) []byte {
	b := make([]byte, 96)
	copy(b, "SF2P\x01")
	b[5] = op
	copy(b[8:24], token)
	binary.BigEndian.PutUint64(b[24:], arg)
	return b
}

// TestControlBuffer: while the peer reads a data connection, what a client
// sends on its control connection waits in a small receive buffer, not in
// one of Server.MaxRcvbuf.
func TestControlBuffer(t *testing.T) {
	addr := startPeer(t, &peer.Server{MaxRcvbuf: 4 << 20})
	ctl, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	ctl.SetDeadline(time.Now().Add(10 * time.Second))
	reply := make([]byte, 64)
	if _, err := ctl.Write(request(1, nil, 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(ctl, reply); err != nil || reply[6] != 0 {
		t.Fatalf("Open: %x, %v", reply, err)
	}
	data, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer data.Close()
	data.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := data.Write(request(2, reply[48:64], 0)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(data, reply); err != nil || reply[6] != 0 {
		t.Fatalf("data connection: %x, %v", reply, err)
	}
	// The peer waits 3 seconds for data that does not come, and reads no
	// requests meanwhile.
	if _, err := ctl.Write(request(4, nil, 3000)); err != nil {
		t.Fatal(err)
	}
	ctl.(*net.TCPConn).SetWriteBuffer(4096)
	stats := bytes.Repeat(request(7, nil, 0), 1<<10)
	ctl.SetWriteDeadline(time.Now().Add(time.Second))
	sent := 0
	for {
		n, err := ctl.Write(stats)
		sent += n
		if err != nil {
			break
		}
	}
	t.Logf("%d bytes of requests sent while the peer did not read them", sent)
	if sent > 256<<10 {
		t.Errorf("%d bytes of requests sent while the peer did not read them; want at most 256 KiB", sent)
	}
}
