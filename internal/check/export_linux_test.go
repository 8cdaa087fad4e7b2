package check

import (
	"context"
	"net"
)

// HeldBackPair connects a sending and a receiving TCP socket the way Run does
// for files of size bytes.
func HeldBackPair(ctx context.Context, size int) (send, recv *net.TCPConn, err error) {
	r := &runner{opts: Options{}.withDefaults(), buf: bufferSize(size)}
	if r.ln, err = listen(ctx, r.buf); err != nil {
		return nil, nil, err
	}
	defer r.ln.Close()
	return r.connect(ctx, r.ln)
}
