package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"

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
	if len(files) == 0 {
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
	closeAll := func() {
		for _, l := range []net.Listener{ln, mln} {
			if l != nil {
				l.Close()
			}
		}
	}
	for i, f := range files {
		name := f.Name()
		l, ferr := net.FileListener(f)
		f.Close() // l holds a duplicate
		switch {
		case ferr != nil:
			err = fmt.Errorf("socket activation: fd %d (%s): %w: want a listening stream socket (Accept=no in the .socket unit)", 3+i, name, ferr)
		case name == metricsFDName && mln == nil:
			mln = l
		case name != metricsFDName && ln == nil:
			ln = l
		default:
			l.Close()
			err = fmt.Errorf("socket activation: %d sockets: serve takes one for the files and one named %q for the metrics", len(files), metricsFDName)
		}
		if err == nil {
			err = checkActivated(l, name, log)
		}
		if err != nil {
			for _, f := range files[i+1:] {
				f.Close()
			}
			closeAll()
			return nil, nil, err
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
	if err != nil {
		closeAll()
		return nil, nil, err
	}
	return ln, mln, nil
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
