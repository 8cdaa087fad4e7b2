package uring

import "unsafe"

// The Prep methods fill an SQE for one opcode. They leave Flags and UserData
// alone: Loop sets UserData, callers add SQEIOLink for chains.

// PrepNop prepares IORING_OP_NOP.
func (s *SQE) PrepNop() { s.Opcode = OpNop }

// PrepReadFixed prepares IORING_OP_READ_FIXED (Linux 5.1): read n bytes at
// offset off of fd into registered buffer bufIndex, at addr inside it.
// rwFlags takes RWF_* flags such as RWF_DONTCACHE (Linux 6.14).
func (s *SQE) PrepReadFixed(fd int, addr unsafe.Pointer, n uint32, off uint64, bufIndex uint16, rwFlags uint32) {
	s.Opcode = OpReadFixed
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(addr))
	s.Len = n
	s.Off = off
	s.BufIndex = bufIndex
	s.OpFlags = rwFlags
}

// PrepWriteFixed prepares IORING_OP_WRITE_FIXED (Linux 5.1).
func (s *SQE) PrepWriteFixed(fd int, addr unsafe.Pointer, n uint32, off uint64, bufIndex uint16, rwFlags uint32) {
	s.PrepReadFixed(fd, addr, n, off, bufIndex, rwFlags)
	s.Opcode = OpWriteFixed
}

// PrepSend prepares IORING_OP_SEND (Linux 5.6), a copying send.
func (s *SQE) PrepSend(fd int, addr unsafe.Pointer, n uint32, msgFlags uint32) {
	s.Opcode = OpSend
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(addr))
	s.Len = n
	s.OpFlags = msgFlags
}

// PrepSendZC prepares IORING_OP_SEND_ZC (Linux 6.0). zcFlags takes
// RecvsendFixedBuf (addr lies inside registered buffer bufIndex),
// SendZCReportUsage (Linux 6.2) and RecvsendPollFirst. The request produces a
// result CQE and, when that carries IORING_CQE_F_MORE, a notification CQE once
// the kernel has let go of the buffer.
func (s *SQE) PrepSendZC(fd int, addr unsafe.Pointer, n uint32, msgFlags uint32, zcFlags uint16, bufIndex uint16) {
	s.Opcode = OpSendZC
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(addr))
	s.Len = n
	s.OpFlags = msgFlags
	s.Ioprio = zcFlags
	s.BufIndex = bufIndex
}

// PrepCancel prepares IORING_OP_ASYNC_CANCEL (Linux 5.5) of the request whose
// user_data is target.
func (s *SQE) PrepCancel(target uint64) {
	s.Opcode = OpAsyncCancel
	s.Fd = -1
	s.Addr = target
}

// TimeoutEtimeSuccess is IORING_TIMEOUT_ETIME_SUCCESS (Linux 5.16): a
// timeout that expires completes with -ETIME as a success, so that the
// request linked after it runs.
const TimeoutEtimeSuccess uint32 = 1 << 5

// Timespec is struct __kernel_timespec.
type Timespec struct{ Sec, Nsec int64 }

// PrepTimeout prepares IORING_OP_TIMEOUT (Linux 5.4) of the relative
// duration ts, completed by no other CQE; flags takes TimeoutEtimeSuccess.
// The kernel reads ts when the SQE is submitted.
func (s *SQE) PrepTimeout(ts *Timespec, flags uint32) {
	s.Opcode = OpTimeout
	s.Fd = -1
	s.Addr = uint64(uintptr(unsafe.Pointer(ts)))
	s.Len = 1
	s.OpFlags = flags
}

// OpFsync is IORING_OP_FSYNC (Linux 5.1), and FsyncDatasync its
// IORING_FSYNC_DATASYNC flag (fdatasync(2) rather than fsync(2)).
const (
	OpFsync       uint8  = 3
	FsyncDatasync uint32 = 1 << 0
)

// PrepRecv prepares IORING_OP_RECV (Linux 5.6): receive up to n bytes from the
// socket fd into addr. msgFlags takes MSG_* flags; with MSG_WAITALL on a
// stream socket the request completes only when n bytes have arrived, at end
// of stream or on an error (then, also when cancelled, with the bytes received
// so far if there are any). Like the other socket ops it ignores O_NONBLOCK and
// waits through io_uring's internal poll.
func (s *SQE) PrepRecv(fd int, addr unsafe.Pointer, n uint32, msgFlags uint32) {
	s.Opcode = OpRecv
	s.Fd = int32(fd)
	s.Addr = uint64(uintptr(addr))
	s.Len = n
	s.OpFlags = msgFlags
}

// PrepFsync prepares IORING_OP_FSYNC (Linux 5.1) of the n bytes of fd from
// off (n == 0: to the end of the file); flags takes FsyncDatasync.
func (s *SQE) PrepFsync(fd int, off uint64, n uint32, flags uint32) {
	s.Opcode = OpFsync
	s.Fd = int32(fd)
	s.Off = off
	s.Len = n
	s.OpFlags = flags
}
