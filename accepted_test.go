package sendfile2_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/sendfile2/sendfile2"
)

// TestAcceptedSocket sends from the accepting side, as a server does. Since
// Go 1.24 net.Listen makes an MPTCP listener; a plain TCP client's socket
// accepted from it cannot send zero-copy (EOPNOTSUPP), and the zero-copy
// methods must copy instead, and say so.
func TestAcceptedSocket(t *testing.T) {
	for _, m := range sendfile2.Methods() {
		t.Run(string(m), func(t *testing.T) {
			s := newSender(t, sendfile2.Config{Method: m})
			f, data := tempFile(t, 1<<20+5)
			client, server := tcpPair(t)
			if mp, err := server.MultipathTCP(); err != nil || mp {
				t.Logf("accepted socket: MultipathTCP = %v, %v", mp, err)
			}
			got := receive(client)
			n, err := s.Send(context.Background(), server, f, 5, 1<<20)
			server.Close()
			if err != nil || n != 1<<20 {
				t.Fatalf("Send = %d, %v", n, err)
			}
			if !bytes.Equal(<-got, data[5:]) {
				t.Fatal("wrong bytes")
			}
		})
	}
}
