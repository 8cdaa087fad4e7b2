package sendfile2_test

import (
	"context"
	"io"
	"log"
	"net"
	"net/http"
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

// Serve files with the response head in the same send as the body: the
// listener's conns send file bodies with the Sender, and ConnContext lets
// ServeContent find the conn of a request.
func ExampleServeContent() {
	s, err := sendfile2.NewSender(sendfile2.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	// Plain TCP: the sockets that an MPTCP listener (net.Listen's default
	// since Go 1.24) accepts cannot send zero-copy.
	var lc net.ListenConfig
	lc.SetMultipathTCP(false)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:8080")
	if err != nil {
		log.Fatal(err)
	}
	srv := &http.Server{
		ConnContext: sendfile2.ConnContext,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f, err := os.Open("index.html")
			if err != nil {
				http.NotFound(w, r)
				return
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			sendfile2.ServeContent(w, r, st.Name(), st.ModTime(), io.NewSectionReader(f, 0, st.Size()))
		}),
	}
	log.Fatal(srv.Serve(sendfile2.NewListener(ln, s)))
}
