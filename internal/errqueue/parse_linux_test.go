package errqueue_test

import (
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/errqueue"
)

// TestLayout: the package's constants and layout are Linux's as x/sys/unix
// has them.
func TestLayout(t *testing.T) {
	for _, c := range []struct {
		name      string
		got, want int
	}{
		{"SOL_IP", errqueue.SolIP, unix.SOL_IP},
		{"SOL_IPV6", errqueue.SolIPv6, unix.SOL_IPV6},
		{"IP_RECVERR", errqueue.IPRecvErr, unix.IP_RECVERR},
		{"IPV6_RECVERR", errqueue.IPv6RecvErr, unix.IPV6_RECVERR},
		{"SO_EE_ORIGIN_ZEROCOPY", errqueue.OriginZeroCopy, unix.SO_EE_ORIGIN_ZEROCOPY},
		{"SO_EE_CODE_ZEROCOPY_COPIED", errqueue.CodeZeroCopyCopied, unix.SO_EE_CODE_ZEROCOPY_COPIED},
		{"sizeof(struct sock_extended_err)", errqueue.SizeofSockExtendedErr, int(unsafe.Sizeof(unix.SockExtendedErr{}))},
		{"CMSG_SPACE(44)", errqueue.CmsgSpace(44), unix.CmsgSpace(44)},
		{"CMSG_SPACE(1)", errqueue.CmsgSpace(1), unix.CmsgSpace(1)},
	} {
		if c.got != c.want {
			t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
		}
	}
	// A control message built with x/sys/unix parses.
	b := make([]byte, unix.CmsgSpace(32))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.SOL_IP, unix.IP_RECVERR
	h.SetLen(unix.CmsgLen(32))
	ee := (*unix.SockExtendedErr)(unsafe.Pointer(&b[unix.CmsgLen(0)]))
	ee.Origin, ee.Code, ee.Info, ee.Data = unix.SO_EE_ORIGIN_ZEROCOPY, unix.SO_EE_CODE_ZEROCOPY_COPIED, 10, 12
	notes, others := errqueue.Parse(b, nil)
	if len(notes) != 1 || notes[0] != (errqueue.Notification{Lo: 10, Hi: 12, Copied: true}) || len(others) != 0 {
		t.Fatalf("Parse = %+v, %+v", notes, others)
	}
}
