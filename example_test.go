package sendfile2_test

import (
	"context"
	"log"
	"net"
	"os"

	"github.com/sendfile2/sendfile2"
)

// Send a whole file to a connection; when Send returns, the file may be
// rewritten in place without the peer seeing the new bytes.
func ExampleSend() {
	conn, err := net.Dial("tcp", "127.0.0.1:9000")
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	f, err := os.Open("index.html")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		log.Fatal(err)
	}
	if _, err := sendfile2.Send(context.Background(), conn.(*net.TCPConn), f, 0, st.Size()); err != nil {
		log.Fatal(err)
	}
}

// One Sender serves every connection of a server.
func ExampleNewSender() {
	s, err := sendfile2.NewSender(sendfile2.Config{Method: sendfile2.Auto, DontCache: true})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	log.Printf("sending with %s", s.Method())
}
