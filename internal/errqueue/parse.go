package errqueue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// Values from Linux's uapi headers (linux/in.h, linux/in6.h,
// linux/errqueue.h), the same on every architecture.
const (
	SolIP                 = 0  // SOL_IP
	SolIPv6               = 41 // SOL_IPV6
	IPRecvErr             = 11 // IP_RECVERR
	IPv6RecvErr           = 25 // IPV6_RECVERR
	OriginZeroCopy        = 5  // SO_EE_ORIGIN_ZEROCOPY
	CodeZeroCopyCopied    = 1  // SO_EE_CODE_ZEROCOPY_COPIED
	SizeofSockExtendedErr = 16 // sizeof(struct sock_extended_err)
	wordSize              = strconv.IntSize / 8
	cmsgHeaderSize        = wordSize + 8 // size_t cmsg_len; int cmsg_level; int cmsg_type
)

// ExtendedErr is struct sock_extended_err.
type ExtendedErr struct {
	Errno  uint32 // ee_errno
	Origin uint8  // ee_origin: SO_EE_ORIGIN_*
	Type   uint8  // ee_type
	Code   uint8  // ee_code
	Info   uint32 // ee_info
	Data   uint32 // ee_data
}

// Notification says that the kernel released the zero-copy send calls
// numbered Lo to Hi, both included, of the socket's 32-bit counter. Hi is less
// than Lo when the range wraps.
type Notification struct {
	Lo, Hi uint32
	// Copied is ee_code's SO_EE_CODE_ZEROCOPY_COPIED: the kernel copied the
	// data of (some of) these calls instead of sending from the pages.
	Copied bool
}

// Calls is the number of send calls in the range, from 1 to 2^32.
func (n Notification) Calls() uint64 { return uint64(n.Hi-n.Lo) + 1 }

// Other is an entry of the error queue that is not a zero-copy notification:
// an extended error of another origin (Reason is nil and Err holds it), a
// control message of another kind (Reason matches ErrNotExtendedErr) or a
// malformed one (Reason matches ErrMalformed).
type Other struct {
	Level, Type int32 // of the control message; 0 when even its header is cut
	Err         ExtendedErr
	Reason      error
}

var (
	// ErrMalformed is matched by the Reason of a control message that is
	// truncated or whose length is inconsistent.
	ErrMalformed = errors.New("errqueue: malformed control message")
	// ErrNotExtendedErr is matched by the Reason of a control message other
	// than IP_RECVERR and IPV6_RECVERR.
	ErrNotExtendedErr = errors.New("errqueue: not an extended error")
)

// Parse parses oob, the control messages (msg_control, msg_controllen bytes)
// that one recvmsg(2) with MSG_ERRQUEUE returned, appends the zero-copy
// notifications to notes and returns them with every other entry. It never
// panics, whatever oob holds; parsing stops at the first control message
// whose length cannot be trusted.
func Parse(oob []byte, notes []Notification) ([]Notification, []Other) {
	var others []Other
	ne := binary.NativeEndian
	for len(oob) > 0 {
		if len(oob) < cmsgHeaderSize {
			others = append(others, Other{Reason: fmt.Errorf("%w: %d bytes left, less than a header", ErrMalformed, len(oob))})
			break
		}
		var clen uint64
		if wordSize == 8 {
			clen = ne.Uint64(oob)
		} else {
			clen = uint64(ne.Uint32(oob))
		}
		level := int32(ne.Uint32(oob[wordSize:]))
		typ := int32(ne.Uint32(oob[wordSize+4:]))
		if clen < cmsgHeaderSize || clen > uint64(len(oob)) {
			others = append(others, Other{Level: level, Type: typ,
				Reason: fmt.Errorf("%w: cmsg_len %d with %d bytes left", ErrMalformed, clen, len(oob))})
			break
		}
		data := oob[cmsgHeaderSize:clen]
		if next := align(clen); next < uint64(len(oob)) {
			oob = oob[next:]
		} else {
			oob = nil
		}
		if !(level == SolIP && typ == IPRecvErr || level == SolIPv6 && typ == IPv6RecvErr) {
			others = append(others, Other{Level: level, Type: typ, Reason: ErrNotExtendedErr})
			continue
		}
		// The sock_extended_err, then the offender's address
		// (SO_EE_OFFENDER), which a zero-copy notification does not use.
		if len(data) < SizeofSockExtendedErr {
			others = append(others, Other{Level: level, Type: typ,
				Reason: fmt.Errorf("%w: %d bytes of data, less than a sock_extended_err", ErrMalformed, len(data))})
			continue
		}
		ee := ExtendedErr{
			Errno:  ne.Uint32(data[0:]),
			Origin: data[4],
			Type:   data[5],
			Code:   data[6],
			Info:   ne.Uint32(data[8:]),
			Data:   ne.Uint32(data[12:]),
		}
		if ee.Origin != OriginZeroCopy {
			others = append(others, Other{Level: level, Type: typ, Err: ee})
			continue
		}
		notes = append(notes, Notification{Lo: ee.Info, Hi: ee.Data, Copied: ee.Code&CodeZeroCopyCopied != 0})
	}
	return notes, others
}

// align rounds n up to the alignment of control messages (CMSG_ALIGN).
func align(n uint64) uint64 { return (n + wordSize - 1) &^ (wordSize - 1) }

// CmsgSpace is CMSG_SPACE(n) in Linux's layout: the bytes a control message
// with n bytes of data takes, padding included.
func CmsgSpace(n int) int { return int(align(uint64(cmsgHeaderSize)) + align(uint64(n))) }
