// Command httpfileserver is the net/http baseline of scripts/bench-http.sh:
// http.FileServer over http.Dir on a plain net.Listen listener, as a Go
// program would serve files without sendfile2. Bodies go out with net/http's
// own sendfile(2).
//
// Usage:
//
//	httpfileserver [-addr HOST:PORT] DIR
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "address to listen on")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [-addr HOST:PORT] DIR\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("serving %s on %s", flag.Arg(0), ln.Addr())
	log.Fatal(http.Serve(ln, http.FileServer(http.Dir(flag.Arg(0)))))
}
