package main

import (
	"log/slog"
	"os"
	"syscall"

	"github.com/sendfile2/sendfile2"
)

// fdsPerConn is the most descriptors a connection of the file server may
// hold with method, as measured with stalled downloads and uploads
// (TestFDsPerConn counts them in /proc/self/fd, Linux 6.18):
//
//   - a download: its socket and the file: 2. Copy, sendfile and splice
//     wait for room in the socket in the Sender's shared Poller (one epoll
//     instance for all its sends, counted once in fdReserve), uring and
//     uring-mmap on the ring; msgzc makes an epoll instance per send, which
//     also watches the socket's error queue, and a send whose socket the
//     Poller already watches under the same number falls back to one too:
//     3 is budgeted for every method;
//   - an upload received with the Sender: its socket, the duplicate that
//     Receive reads, the temporary file and its directory (an os.Root): 4,
//     with the receive waiting in the Poller or on the ring; 5 budgeted, as
//     for a download, and the directory again while it is fsynced at the
//     end;
//   - splice holds a pipe, two more, on either side. An upload that
//     splices (splice's, auto's) holds it only while it moves bytes, not
//     while it waits for the peer nor while the directory is fsynced: 6 at
//     most, within the 7 of an upload; the Sender keeps up to 4 empty
//     pipes, 8 descriptors counted in fdReserve.
//
// One more, for a moment: os.Root opens the directories of a path in turn,
// and the hard-link guard opens the file's directory.
//
// A response with --precompressed holds the encoded file alone: it closes
// the file it stands for once it has sniffed its type.
//
// A file that a response reads is counted with its connection even when the
// file cache shares it (opencache.go): a file leaves the cache while a
// response still reads it. The cache's own files, --open-files at most,
// are counted apart.
//
// A connection carries streams requests at once: 1 for HTTP/1.1,
// h2MaxStreams for HTTP/2 (with --tls-cert). Each holds what a request
// holds beside the socket; the socket is counted once.
func fdsPerConn(method string, upload bool, streams int) int {
	n := 3 + 1
	if upload {
		n = 5 + 1 + 1
	}
	if method == string(sendfile2.Splice) {
		n += 2
	}
	return 1 + max(streams, 1)*(n-1)
}

// h2MaxStreams is the most concurrent streams (requests) an HTTP/2
// connection may carry: each may hold an open file, an upload's temporary
// file or a password check, and the descriptor budget counts them all.
// net/http's default is 250.
const h2MaxStreams = 16

// streamsPerConn is how many requests a connection of o may carry at once.
func streamsPerConn(o serveOptions) int {
	if o.http.tlsCert != "" {
		return h2MaxStreams
	}
	return 1
}

const (
	// fdReserve is left for what is not a connection: the log, the
	// directories of a walk, the conn that Accept takes over the limit
	// to make room for it, the Go runtime's own.
	fdReserve = 64
	// metricsMaxConns bounds the metrics server's connections.
	metricsMaxConns = 16
)

// fitConns returns o.maxConns, or the most connections whose worst case
// fits RLIMIT_NOFILE if that is less (and logs it: on a usual limit of
// 20,000 or 65,536 the default is lowered, which is no fault), so that accept(2) never
// fails with EMFILE; and o.openFiles, or a quarter of the descriptors left
// beside the reserve if that is less (logged too), for the file cache,
// whose files it counts apart. It raises the soft limit to the hard limit
// first: Go (1.19+) raises it at start, but to one below the hard limit,
// and not when the process lowered it since.
func fitConns(o serveOptions, log *slog.Logger) (conns, openFiles int) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		log.Warn("RLIMIT_NOFILE unknown: --max-conns and --open-files kept as they are", "err", err)
		return o.maxConns, o.openFiles
	}
	if lim.Cur < lim.Max {
		raised := lim
		raised.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			lim = raised
		}
	}
	per := fdsPerConn(o.method, o.upload, streamsPerConn(o))
	open := openDescriptors()
	avail := int64(min(lim.Cur, 1<<40)) - int64(open) - fdReserve - metricsMaxConns
	openFiles = o.openFiles
	if quarter := int(max(avail/4, 0)); openFiles > quarter {
		log.Info("--open-files lowered to fit RLIMIT_NOFILE", "open_files", quarter, "asked", o.openFiles,
			"nofile", lim.Cur, "open", open)
		openFiles = quarter
	}
	avail -= int64(openFiles)
	n := int(max(avail/int64(per), 1))
	if n >= o.maxConns {
		return o.maxConns, openFiles
	}
	log.Info("--max-conns lowered to fit RLIMIT_NOFILE", "max_conns", n, "asked", o.maxConns,
		"nofile", lim.Cur, "open", open, "per_conn", per, "reserve", fdReserve+metricsMaxConns, "open_files", openFiles)
	return n, openFiles
}

// openDescriptors counts the process's open descriptors.
func openDescriptors() int {
	for _, dir := range []string{"/proc/self/fd", "/dev/fd"} {
		if fds, err := os.ReadDir(dir); err == nil {
			return len(fds) - 1 // the one ReadDir used
		}
	}
	return 0
}
