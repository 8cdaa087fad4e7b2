package uring

import "unsafe"

// Definitions from include/uapi/linux/io_uring.h. golang.org/x/sys/unix has
// the system call numbers but none of these.

// Opcodes (enum io_uring_op).
const (
	OpNop         uint8 = 0
	OpReadFixed   uint8 = 4
	OpWriteFixed  uint8 = 5
	OpPollAdd     uint8 = 6
	OpTimeout     uint8 = 11
	OpAsyncCancel uint8 = 14
	OpRead        uint8 = 22
	OpWrite       uint8 = 23
	OpSend        uint8 = 26
	OpRecv        uint8 = 27
	OpSplice      uint8 = 30
	OpSendZC      uint8 = 47
	OpSendmsgZC   uint8 = 48
)

// opNames names the opcodes this package prepares, for probe reports and errors.
var opNames = map[uint8]string{
	OpNop:         "NOP",
	OpReadFixed:   "READ_FIXED",
	OpWriteFixed:  "WRITE_FIXED",
	OpPollAdd:     "POLL_ADD",
	OpTimeout:     "TIMEOUT",
	OpAsyncCancel: "ASYNC_CANCEL",
	OpRead:        "READ",
	OpWrite:       "WRITE",
	OpSend:        "SEND",
	OpRecv:        "RECV",
	OpSplice:      "SPLICE",
	OpSendZC:      "SEND_ZC",
	OpSendmsgZC:   "SENDMSG_ZC",
}

// SQE flags (sqe->flags).
const (
	SQEFixedFile      uint8 = 1 << 0
	SQEIODrain        uint8 = 1 << 1
	SQEIOLink         uint8 = 1 << 2
	SQEIOHardlink     uint8 = 1 << 3
	SQEAsync          uint8 = 1 << 4
	SQEBufferSelect   uint8 = 1 << 5
	SQECQESkipSuccess uint8 = 1 << 6
)

// Setup flags (io_uring_params.flags).
const (
	setupCQSize       uint32 = 1 << 3
	setupClamp        uint32 = 1 << 4
	setupSubmitAll    uint32 = 1 << 7
	setupCoopTaskrun  uint32 = 1 << 8  // Linux 5.19
	setupTaskrunFlag  uint32 = 1 << 9  // Linux 5.19
	setupSingleIssuer uint32 = 1 << 12 // Linux 6.0
	setupDeferTaskrun uint32 = 1 << 13 // Linux 6.1
)

// Feature flags (io_uring_params.features).
const (
	FeatSingleMmap uint32 = 1 << 0
	FeatNoDrop     uint32 = 1 << 1
	FeatExtArg     uint32 = 1 << 8
	FeatLinkedFile uint32 = 1 << 12
)

// Send and receive flags, in sqe->ioprio.
const (
	RecvsendPollFirst    uint16 = 1 << 0
	RecvsendFixedBuf     uint16 = 1 << 2
	SendZCReportUsage    uint16 = 1 << 3
	NotifUsageZCCopied   uint32 = 1 << 31
	sendVectorized       uint16 = 1 << 5
	asyncCancelAll       uint32 = 1 << 0
	asyncCancelUserData  uint32 = 1 << 4
	ioUringOpSupported   uint16 = 1 << 0
	probeOpsLen                 = 256
	enterGetEvents       uint32 = 1 << 0
	sqFlagCQOverflow     uint32 = 1 << 1
	sqFlagTaskrun        uint32 = 1 << 2
	cqFlagEventfdDisable uint32 = 1 << 0
)

// CQE flags.
const (
	CQEFBuffer       uint32 = 1 << 0
	CQEFMore         uint32 = 1 << 1
	CQEFSockNonempty uint32 = 1 << 2
	CQEFNotif        uint32 = 1 << 3
)

// mmap offsets.
const (
	offSQRing int64 = 0
	offCQRing int64 = 0x8000000
	offSQEs   int64 = 0x10000000
)

// io_uring_register(2) opcodes.
const (
	registerBuffers     = 0
	unregisterBuffers   = 1
	registerEventfd     = 4
	unregisterEventfd   = 5
	registerProbe       = 8
	registerFiles       = 2
	unregisterFiles     = 3
	registerFilesUpdate = 6
)

// SQE is struct io_uring_sqe (64 bytes).
type SQE struct {
	Opcode      uint8
	Flags       uint8
	Ioprio      uint16
	Fd          int32
	Off         uint64 // also addr2
	Addr        uint64 // also splice_off_in
	Len         uint32
	OpFlags     uint32 // rw_flags, msg_flags, cancel_flags, ...
	UserData    uint64
	BufIndex    uint16
	Personality uint16
	SpliceFdIn  int32 // also file_index, addr_len
	Addr3       uint64
	pad         uint64
}

// CQE is struct io_uring_cqe (16 bytes).
type CQE struct {
	UserData uint64
	Res      int32
	Flags    uint32
}

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type params struct {
	SQEntries    uint32
	CQEntries    uint32
	Flags        uint32
	SQThreadCPU  uint32
	SQThreadIdle uint32
	Features     uint32
	WQFd         uint32
	Resv         [3]uint32
	SQOff        sqringOffsets
	CQOff        cqringOffsets
}

type probeOp struct {
	Op    uint8
	Resv  uint8
	Flags uint16
	Resv2 uint32
}

type probeHeader struct {
	LastOp uint8
	OpsLen uint8
	Resv   uint16
	Resv2  [3]uint32
}

type probeBuf struct {
	probeHeader
	Ops [probeOpsLen]probeOp
}

// The layouts must match the kernel's exactly.
var (
	_ [64 - unsafe.Sizeof(SQE{})]struct{}
	_ [unsafe.Sizeof(SQE{}) - 64]struct{}
	_ [16 - unsafe.Sizeof(CQE{})]struct{}
	_ [unsafe.Sizeof(CQE{}) - 16]struct{}
	_ [120 - unsafe.Sizeof(params{})]struct{}
	_ [unsafe.Sizeof(params{}) - 120]struct{}
	_ [16 - unsafe.Sizeof(probeHeader{})]struct{}
	_ [8 - unsafe.Sizeof(probeOp{})]struct{}
)
