package sendfile2

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/engine"
)

// Adaptivity, for Auto only: a zero-copy send costs more than a copy when the
// kernel copies anyway, which it does for every send that leaves through lo
// or veth (a zero-copy skb delivered to a local socket is copied before it is
// queued there), or through a device without scatter-gather.
// The notifications say so (IORING_NOTIF_USAGE_ZC_COPIED, SO_EE_CODE_ZEROCOPY_COPIED).
// A Sender remembers, per route (local and peer address), whether the last
// zero-copy sends were all copied; after copiedStreak such sends in a row it
// sends on that route with Copy, and tries zero-copy again after reprobe.
// Sends smaller than smallSend take Copy from the start: below it, the
// notification's round trip costs more than the copy saves.
//
// Until a route's zero-copy sends have been seen to leave without a copy
// (a new route, or one trying again after reprobe), at most maxProbes of them
// are out at once; the sends that come meanwhile copy. Otherwise a thousand
// connections that start together on a route that copies would all send
// zero-copy, and wait for notifications that come only as the peers read,
// while copiedStreak of them would have told.
const (
	copiedStreak = 3
	maxProbes    = copiedStreak
	reprobe      = time.Minute
	smallSend    = 16 << 10
	maxRoutes    = 4096
)

// routes is what an Auto Sender knows about its routes, and counts of what
// it decided.
type routes struct {
	mu sync.Mutex
	m  map[routeKey]*route

	switches, copiedRoute, small, probing atomic.Int64
}

type routeKey struct{ local, peer netip.Addr }

// route is what a Sender knows about one route.
type route struct {
	mu      sync.Mutex
	streak  int       // zero-copy sends in a row that were all copied
	copying time.Time // sends take Copy until then
	known   bool      // a zero-copy send left without a copy since the route last switched to Copy
	probes  int       // zero-copy sends out while the route is not known
	rs      *routes
}

// trial is one zero-copy send on a route, which reports to it with end; the
// zero trial, for sends that teach no route, does nothing.
type trial struct {
	r       *route
	counted bool // one of the route's probes
}

// end reports what the notifications of the send said, if it succeeded.
func (p trial) end(ok bool, zc, copied int64) {
	r := p.r
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p.counted {
		r.probes--
	}
	if !ok {
		return
	}
	switch {
	case zc > 0:
		r.streak = 0
		r.known = true
	case copied > 0:
		r.streak++
		if r.streak >= copiedStreak {
			r.streak = 0
			r.known = false
			now := time.Now()
			if !now.Before(r.copying) {
				// Sends that were in flight when the route switched
				// report after it: they do not switch it again.
				r.rs.switches.Add(1)
			}
			r.copying = now.Add(reprobe)
		}
	}
}

// choose picks the method for one send of n bytes on sock, whose method
// would be m, and returns the trial that the send ends. The Sender asks only
// when it was configured with Auto.
func (rs *routes) choose(m Method, sock *engine.Socket, n int64) (Method, trial) {
	if !kindOf(m).ZeroCopy() {
		return m, trial{}
	}
	if n < smallSend {
		rs.small.Add(1)
		return Copy, trial{}
	}
	if sock.Local == nil {
		local, err := unix.Getsockname(sock.FD)
		if err != nil {
			return m, trial{}
		}
		sock.Local = local
	}
	r := rs.route(routeKey{addrOf(sock.Local), addrOf(sock.Peer)})
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case time.Now().Before(r.copying):
		rs.copiedRoute.Add(1)
		return Copy, trial{}
	case r.known:
		return m, trial{r: r}
	case r.probes < maxProbes:
		r.probes++
		return m, trial{r: r, counted: true}
	}
	rs.probing.Add(1)
	return Copy, trial{}
}

// route returns the route of key, made if it is new.
func (rs *routes) route(key routeKey) *route {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	r := rs.m[key]
	if r == nil {
		if len(rs.m) >= maxRoutes {
			clear(rs.m) // forget everything rather than grow without bound
		}
		if rs.m == nil {
			rs.m = map[routeKey]*route{}
		}
		r = &route{rs: rs}
		rs.m[key] = r
	}
	return r
}

// stats reports the decisions, and the routes that send with Copy now.
func (rs *routes) stats() AdaptiveStats {
	st := AdaptiveStats{
		Switches:    rs.switches.Load(),
		CopiedRoute: rs.copiedRoute.Load(),
		Small:       rs.small.Load(),
		Probing:     rs.probing.Load(),
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	now := time.Now()
	for _, r := range rs.m {
		r.mu.Lock()
		if now.Before(r.copying) {
			st.CopyingRoutes++
		}
		r.mu.Unlock()
	}
	return st
}

func addrOf(sa unix.Sockaddr) netip.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr)
	}
	return netip.Addr{}
}
