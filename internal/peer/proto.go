package peer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// The wire format: every request is requestSize bytes, every reply
// replySize bytes, big-endian.
//
//	request: "SF2P" | version | op | 0 0 | token [16] | args [9]uint64
//	reply:   "SF2R" | version | op | status | 0 | received | changed |
//	         first change (int64, -1: none) | CPU ns | flags uint16 |
//	         small port uint16 | window uint32 | token [16]
const (
	requestSize = 96
	replySize   = 64
	version     = 1
	nargs       = 9
)

var (
	requestMagic = [4]byte{'S', 'F', '2', 'P'}
	replyMagic   = [4]byte{'S', 'F', '2', 'R'}
)

// The operations. Open, Read, Drain, Reset, Close and Stats come on a
// control connection; Data is the first message of a data connection.
const (
	opOpen  = 1 // args: seed[0..3], skip; reply: token, small port
	opData  = 2 // token
	opRead  = 3 // args: bytes, timeout ms
	opDrain = 4 // args: timeout ms
	opReset = 5
	opClose = 6
	opStats = 7
)

// Reply statuses.
const (
	statusOK         = 0
	statusBad        = 1 // malformed or out-of-order request
	statusBusy       = 2 // MaxSessions reached
	statusNoData     = 3 // no data connection
	statusReadFailed = 4 // the data connection failed or timed out (counts are valid)
)

const (
	flagEOF = 1 << 0 // the data connection's stream ended
)

type request struct {
	op    byte
	token [16]byte
	args  [nargs]uint64
}

func (r *request) marshal() []byte {
	b := make([]byte, requestSize)
	copy(b, requestMagic[:])
	b[4] = version
	b[5] = r.op
	copy(b[8:24], r.token[:])
	for i, a := range r.args {
		binary.BigEndian.PutUint64(b[24+8*i:], a)
	}
	return b
}

var errProtocol = errors.New("peer: not the sendfile2 peer protocol, or another version")

func readRequest(rd io.Reader) (request, error) {
	var b [requestSize]byte
	if _, err := io.ReadFull(rd, b[:]); err != nil {
		return request{}, err
	}
	if [4]byte(b[:4]) != requestMagic || b[4] != version || b[6] != 0 || b[7] != 0 {
		return request{}, errProtocol
	}
	r := request{op: b[5], token: [16]byte(b[8:24])}
	for i := range r.args {
		r.args[i] = binary.BigEndian.Uint64(b[24+8*i:])
	}
	return r, nil
}

// Report is what the peer says about a session's data connection: counts
// since the connection joined the session.
type Report struct {
	// Received is the number of bytes read from the data connection.
	Received int64
	// Changed is the number of received bytes that differ from the stream
	// the session named (zero when it named none).
	Changed int64
	// FirstChange is the offset of the first changed byte, or -1.
	FirstChange int64
	// EOF says whether the stream ended (the sender closed or shut down its
	// side).
	EOF bool
	// Window is the receive buffer of the data connection (SO_RCVBUF as
	// getsockopt reads it; the kernel doubles what was set).
	Window int
	// CPU is the user and system CPU time the peer process has used since it
	// started; the difference of two reports is what it used between them.
	CPU time.Duration

	op        byte
	status    byte
	token     [16]byte
	smallPort int
}

func (r *Report) marshal() []byte {
	b := make([]byte, replySize)
	copy(b, replyMagic[:])
	b[4] = version
	b[5] = r.op
	b[6] = r.status
	binary.BigEndian.PutUint64(b[8:], uint64(r.Received))
	binary.BigEndian.PutUint64(b[16:], uint64(r.Changed))
	binary.BigEndian.PutUint64(b[24:], uint64(r.FirstChange))
	binary.BigEndian.PutUint64(b[32:], uint64(r.CPU))
	var flags uint16
	if r.EOF {
		flags |= flagEOF
	}
	binary.BigEndian.PutUint16(b[40:], flags)
	binary.BigEndian.PutUint16(b[42:], uint16(r.smallPort))
	binary.BigEndian.PutUint32(b[44:], uint32(min(max(int64(r.Window), 0), math.MaxUint32)))
	copy(b[48:], r.token[:])
	return b
}

func readReply(rd io.Reader, op byte) (Report, error) {
	var b [replySize]byte
	if _, err := io.ReadFull(rd, b[:]); err != nil {
		return Report{}, err
	}
	if [4]byte(b[:4]) != replyMagic || b[4] != version || b[7] != 0 || binary.BigEndian.Uint16(b[40:])&^flagEOF != 0 {
		return Report{}, errProtocol
	}
	r := Report{
		op:          b[5],
		status:      b[6],
		Received:    int64(binary.BigEndian.Uint64(b[8:])),
		Changed:     int64(binary.BigEndian.Uint64(b[16:])),
		FirstChange: int64(binary.BigEndian.Uint64(b[24:])),
		CPU:         time.Duration(binary.BigEndian.Uint64(b[32:])),
		EOF:         binary.BigEndian.Uint16(b[40:])&flagEOF != 0,
		smallPort:   int(binary.BigEndian.Uint16(b[42:])),
		Window:      int(binary.BigEndian.Uint32(b[44:])),
		token:       [16]byte(b[48:64]),
	}
	if r.op != op {
		return r, fmt.Errorf("peer: reply to operation %d, want %d", r.op, op)
	}
	return r, statusError(r.status)
}

// Errors a peer reports.
var (
	ErrBusy       = errors.New("peer: busy (too many sessions)")
	ErrBadRequest = errors.New("peer: request refused")
	ErrNoData     = errors.New("peer: the session has no data connection")
	ErrReadFailed = errors.New("peer: reading the data connection failed or timed out")
)

func statusError(s byte) error {
	switch s {
	case statusOK:
		return nil
	case statusBusy:
		return ErrBusy
	case statusNoData:
		return ErrNoData
	case statusReadFailed:
		return ErrReadFailed
	default:
		return ErrBadRequest
	}
}
