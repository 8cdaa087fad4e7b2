package peer

import (
	"bytes"
	"testing"
)

// FuzzReadRequest: whatever a stranger sends, readRequest either refuses it
// or returns the request that marshals back to exactly those bytes; it never
// reads more than one request.
func FuzzReadRequest(f *testing.F) {
	f.Add((&request{op: opOpen, args: [nargs]uint64{1, 2, 3, 4, 5}}).marshal())
	f.Add((&request{op: opData, token: [16]byte{9}}).marshal())
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		rd := bytes.NewReader(b)
		req, err := readRequest(rd)
		if err != nil {
			return
		}
		if got := len(b) - rd.Len(); got != requestSize {
			t.Fatalf("read %d bytes for one request", got)
		}
		if m := req.marshal(); !bytes.Equal(m, b[:requestSize]) {
			t.Fatalf("request %+v marshals to %x, read from %x", req, m, b[:requestSize])
		}
	})
}

// FuzzReadReply: the client side of the same.
func FuzzReadReply(f *testing.F) {
	f.Add((&Report{op: opRead, Received: 5, FirstChange: -1, smallPort: 7001}).marshal(), byte(opRead))
	f.Fuzz(func(t *testing.T, b []byte, op byte) {
		rep, err := readReply(bytes.NewReader(b), op)
		if err != nil {
			return
		}
		if m := rep.marshal(); !bytes.Equal(m[:48], b[:48]) {
			t.Fatalf("reply %+v marshals to %x, read from %x", rep, m[:48], b[:48])
		}
	})
}
