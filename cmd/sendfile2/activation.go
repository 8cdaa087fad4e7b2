package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"

	"github.com/coreos/go-systemd/v22/activation"
)

// metricsFDName is the name (FileDescriptorName= in the .socket unit,
// LISTEN_FDNAMES in the environment) of an activated socket that serves
// the metrics rather than the files.
const metricsFDName = "metrics"

// serveListeners returns the listeners of serve: those that systemd passed
// (socket activation: LISTEN_PID is this process, LISTEN_FDS sockets from
// fd 3 on, LISTEN_FDNAMES their names), else new ones on --addr and
// --metrics-addr (mln is nil without it). changed reports whether a flag
// was given.
//
// An activated socket is the one systemd bound, with the options of its
// .socket unit, and it must be a listening stream socket (Accept=no). The
// connections serve accepts on it are of the socket's kind: zero-copy
// needs plain TCP (ListenStream=PORT or ADDR:PORT), which is what systemd
// binds unless the unit says SocketProtocol=mptcp; the sockets an MPTCP
// listener accepts cannot send zero-copy, nor can Unix sockets
// (ListenStream=/run/PATH), and the Sender then copies every body, which
// stays safe. serve says so in its log when it starts.
func serveListeners(ctx context.Context, o serveOptions, changed func(string) bool, log *slog.Logger) (ln, mln net.Listener, err error) {
	files := activation.Files(true) // unsets LISTEN_*: children do not inherit them
	if len(files) > 0 {
		return activatedListeners(ctx, o, files, changed, log)
	}
	if ln, err = listen(ctx, o.addr); err != nil {
		return nil, nil, fmt.Errorf("--addr: %w", err)
	}
	if o.metricsAddr != "" {
		if mln, err = listen(ctx, o.metricsAddr); err != nil {
			ln.Close()
			return nil, nil, fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	return ln, mln, nil
}

// activatedListeners returns the listeners of the sockets systemd passed as files:
// the one named metricsFDName serves the metrics, the other the files. It
// closes the files.
func activatedListeners(ctx context.Context, o serveOptions, files []*os.File, changed func(string) bool, log *slog.Logger) (ln, mln net.Listener, err error) {
	defer func() {
		if err != nil {
			for _, l := range []net.Listener{ln, mln} {
				if l != nil {
					l.Close()
				}
			}
			ln, mln = nil, nil
		}
	}()
	for i, f := range files {
		var l net.Listener
		l, err = activatedListener(3+i, f, log)
		switch {
		case err != nil:
		case f.Name() == metricsFDName && mln == nil:
			mln = l
		case f.Name() != metricsFDName && ln == nil:
			ln = l
		default:
			l.Close()
			err = fmt.Errorf("socket activation: %d sockets: serve takes one for the files and one named %q for the metrics", len(files), metricsFDName)
		}
		if err != nil {
			for _, f := range files[i+1:] {
				f.Close()
			}
			return ln, mln, err
		}
	}
	switch {
	case ln == nil:
		err = fmt.Errorf("socket activation: only a socket named %q: serve needs one for the files", metricsFDName)
	case changed("addr"):
		err = errors.New("--addr: serve was started with a listening socket from systemd (LISTEN_FDS): leave --addr out, the socket unit says where to listen")
	case changed("metrics-addr") && mln != nil:
		err = fmt.Errorf("--metrics-addr: systemd passed a socket named %q already", metricsFDName)
	case o.metricsAddr != "" && mln == nil:
		if mln, err = listen(ctx, o.metricsAddr); err != nil {
			err = fmt.Errorf("--metrics-addr: %w", err)
		}
	}
	return ln, mln, err
}

// activatedListener makes a listener of the socket f, fd number fd, and
// closes f.
func activatedListener(fd int, f *os.File, log *slog.Logger) (net.Listener, error) {
	l, err := net.FileListener(f)
	f.Close() // l holds a duplicate
	if err != nil {
		return nil, fmt.Errorf("socket activation: fd %d (%s): %w: want a listening stream socket (Accept=no in the .socket unit)", fd, f.Name(), err)
	}
	if err := checkActivated(l, f.Name(), log); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

// checkActivated logs what an activated listener's connections can do: a
// TCP listener's are zero-copy unless it is MPTCP, others always copy.
func checkActivated(l net.Listener, name string, log *slog.Logger) error {
	attrs := []any{"name", name, "addr", l.Addr().String()}
	tl, ok := l.(*net.TCPListener)
	if !ok {
		log.Warn("socket activation: not a TCP socket: every body will be copied (safely); zero-copy needs ListenStream=PORT or ADDR:PORT", attrs...)
		return nil
	}
	if mptcp, err := isMPTCP(tl); err != nil {
		return fmt.Errorf("socket activation: %s: %w", name, err)
	} else if mptcp {
		log.Warn("socket activation: an MPTCP socket (SocketProtocol=mptcp): its connections cannot send zero-copy, so every body will be copied (safely)", attrs...)
		return nil
	}
	log.Info("socket activation", attrs...)
	return nil
}
