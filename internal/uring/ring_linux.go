package uring

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Ring is one io_uring instance: its file descriptor, the shared submission
// and completion rings, and the SQE array. A Ring is not safe for concurrent
// use; Loop serializes access to it.
type Ring struct {
	fd       int
	features uint32
	flags    uint32

	ringMem []byte // SQ and CQ rings, one mapping (IORING_FEAT_SINGLE_MMAP)
	sqeMem  []byte

	sqHead    *uint32 // written by the kernel
	sqTail    *uint32 // written by us, read by the kernel
	sqFlags   *uint32
	sqMask    uint32
	sqEntries uint32
	sqes      []SQE
	sqeTail   uint32 // next SQE to hand out; published to sqTail on submit

	cqHead    *uint32 // written by us
	cqTail    *uint32 // written by the kernel
	cqFlags   *uint32
	cqMask    uint32
	cqEntries uint32
	cqes      []CQE
}

// ErrRingFull is returned by Ring.SQE's callers when the submission queue has
// no free entry.
var ErrRingFull = errors.New("uring: submission queue full")

// NewRing creates a ring with at least sqEntries submission entries and
// cqEntries completion entries (both rounded up to powers of two by the
// kernel). It wraps io_uring_setup(2) and requires Linux 5.4
// (IORING_FEAT_SINGLE_MMAP). IORING_SETUP_SUBMIT_ALL (5.18) is used where the
// kernel has it.
func NewRing(sqEntries, cqEntries uint32) (*Ring, error) {
	return newRing(sqEntries, cqEntries, []uint32{setupSubmitAll, 0})
}

// newRing is NewRing with the first of the sets of setup flags in tries
// (added to IORING_SETUP_CQSIZE and IORING_SETUP_CLAMP) that the kernel
// takes: a kernel refuses flags it does not know with EINVAL.
func newRing(sqEntries, cqEntries uint32, tries []uint32) (*Ring, error) {
	var p params
	var fd int
	var err error
	for _, flags := range tries {
		p = params{Flags: setupCQSize | setupClamp | flags, CQEntries: cqEntries}
		fd, err = setup(sqEntries, &p)
		if !errors.Is(err, unix.EINVAL) {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	r := &Ring{fd: fd, features: p.Features, flags: p.Flags}
	if p.Features&FeatSingleMmap == 0 {
		unix.Close(fd)
		return nil, fmt.Errorf("io_uring_setup: IORING_FEAT_SINGLE_MMAP missing (Linux 5.4+): %w", unix.ENOSYS)
	}
	if err := r.mmap(&p); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func setup(entries uint32, p *params) (int, error) {
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(p)), 0)
	if errno != 0 {
		return -1, os.NewSyscallError("io_uring_setup", errno)
	}
	return int(fd), nil
}

func (r *Ring) mmap(p *params) error {
	sqSize := p.SQOff.Array + p.SQEntries*4
	cqSize := p.CQOff.CQEs + p.CQEntries*uint32(unsafe.Sizeof(CQE{}))
	size := max(sqSize, cqSize)
	mem, err := unix.Mmap(r.fd, offSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return os.NewSyscallError("mmap io_uring rings", err)
	}
	r.ringMem = mem
	sqeMem, err := unix.Mmap(r.fd, offSQEs, int(p.SQEntries)*int(unsafe.Sizeof(SQE{})), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return os.NewSyscallError("mmap io_uring sqes", err)
	}
	r.sqeMem = sqeMem

	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	r.sqHead = at(p.SQOff.Head)
	r.sqTail = at(p.SQOff.Tail)
	r.sqFlags = at(p.SQOff.Flags)
	r.sqMask = *at(p.SQOff.RingMask)
	r.sqEntries = *at(p.SQOff.RingEntries)
	r.sqes = unsafe.Slice((*SQE)(unsafe.Pointer(&sqeMem[0])), r.sqEntries)
	// SQ slot i always holds SQE i: fill the indirection array once.
	array := unsafe.Slice(at(p.SQOff.Array), r.sqEntries)
	for i := range array {
		array[i] = uint32(i)
	}
	r.sqeTail = atomic.LoadUint32(r.sqTail)

	r.cqHead = at(p.CQOff.Head)
	r.cqTail = at(p.CQOff.Tail)
	if p.CQOff.Flags != 0 { // Linux 5.8
		r.cqFlags = at(p.CQOff.Flags)
	}
	r.cqMask = *at(p.CQOff.RingMask)
	r.cqEntries = *at(p.CQOff.RingEntries)
	r.cqes = unsafe.Slice((*CQE)(unsafe.Pointer(&mem[p.CQOff.CQEs])), r.cqEntries)
	return nil
}

// Fd is the ring's file descriptor.
func (r *Ring) Fd() int { return r.fd }

// Features is io_uring_params.features as the kernel reported it.
func (r *Ring) Features() uint32 { return r.features }

// SQEntries and CQEntries are the ring sizes the kernel chose.
func (r *Ring) SQEntries() uint32 { return r.sqEntries }
func (r *Ring) CQEntries() uint32 { return r.cqEntries }

// SQFree is the number of SQEs that SQE can still hand out before a Submit.
func (r *Ring) SQFree() uint32 { return r.sqEntries - (r.sqeTail - atomic.LoadUint32(r.sqHead)) }

// SQE returns the next free submission entry, zeroed, or nil when the
// submission queue is full. It becomes visible to the kernel on Submit.
func (r *Ring) SQE() *SQE {
	if r.SQFree() == 0 {
		return nil
	}
	sqe := &r.sqes[r.sqeTail&r.sqMask]
	*sqe = SQE{}
	r.sqeTail++
	return sqe
}

// Pending is the number of SQEs handed out or published but not yet consumed
// by the kernel.
func (r *Ring) Pending() uint32 { return r.sqeTail - atomic.LoadUint32(r.sqHead) }

// Submit publishes the SQEs handed out since the last call and submits every
// pending one with io_uring_enter(2). It returns how many the kernel consumed.
func (r *Ring) Submit() (int, error) {
	atomic.StoreUint32(r.sqTail, r.sqeTail)
	pending := r.Pending()
	if pending == 0 {
		return 0, nil
	}
	for {
		n, err := r.enter(pending, 0, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return n, os.NewSyscallError("io_uring_enter", err)
		}
		return n, nil
	}
}

// QuietEventfd stops (true) or resumes (false) the signals of the eventfd
// registered with the ring (IORING_CQ_EVENTFD_DISABLED, Linux 5.8; before,
// it does nothing). CQEs posted meanwhile signal nothing: whoever quieted it
// must look at the completion queue after resuming it.
func (r *Ring) QuietEventfd(quiet bool) {
	if r.cqFlags == nil {
		return
	}
	f := atomic.LoadUint32(r.cqFlags) &^ cqFlagEventfdDisable
	if quiet {
		f |= cqFlagEventfdDisable
	}
	atomic.StoreUint32(r.cqFlags, f)
}

// Retract takes back the SQEs that were published or handed out but that the
// kernel has not consumed, after a failed Submit. Only valid without SQPOLL,
// where the kernel reads the queue during io_uring_enter alone.
func (r *Ring) Retract() uint32 {
	head := atomic.LoadUint32(r.sqHead)
	n := r.sqeTail - head
	r.sqeTail = head
	atomic.StoreUint32(r.sqTail, head)
	return n
}

func (r *Ring) enter(toSubmit, minComplete, flags uint32) (int, error) {
	n, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), uintptr(toSubmit), uintptr(minComplete), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

// Wait blocks in io_uring_enter(2) until at least n CQEs are available. The
// Loop never calls it; it is for tests and tools that own a ring alone.
func (r *Ring) Wait(n uint32) error {
	for {
		_, err := r.enter(0, n, enterGetEvents)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return os.NewSyscallError("io_uring_enter", err)
		}
		return nil
	}
}

// Reap appends every available CQE to dst, marks them consumed, and returns
// the extended slice.
func (r *Ring) Reap(dst []CQE) []CQE {
	head := atomic.LoadUint32(r.cqHead)
	tail := atomic.LoadUint32(r.cqTail)
	for ; head != tail; head++ {
		dst = append(dst, r.cqes[head&r.cqMask])
	}
	atomic.StoreUint32(r.cqHead, head)
	return dst
}

// Overflowed reports whether the kernel holds CQEs that did not fit in the
// completion queue (IORING_SQ_CQ_OVERFLOW). FlushOverflow moves them in.
func (r *Ring) Overflowed() bool { return atomic.LoadUint32(r.sqFlags)&sqFlagCQOverflow != 0 }

// FlushOverflow asks the kernel to move overflowed CQEs into the queue.
func (r *Ring) FlushOverflow() error {
	_, err := r.enter(0, 0, enterGetEvents)
	if err != nil && err != unix.EINTR && err != unix.EBUSY && err != unix.EAGAIN {
		return os.NewSyscallError("io_uring_enter", err)
	}
	return nil
}

func (r *Ring) register(op uintptr, arg unsafe.Pointer, nr uintptr) error {
	for {
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), op, uintptr(arg), nr, 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return errno
		}
		return nil
	}
}

// RegisterBuffers registers bufs as fixed buffers 0..len(bufs)-1
// (IORING_REGISTER_BUFFERS, Linux 5.1). The memory must be anonymous, shmem or
// hugetlb: use Mmap, never Go heap memory. Without CAP_IPC_LOCK the pages
// count against RLIMIT_MEMLOCK, and registration fails with ENOMEM past it.
func (r *Ring) RegisterBuffers(bufs [][]byte) error {
	if len(bufs) == 0 {
		return nil
	}
	iovs := make([]unix.Iovec, len(bufs))
	for i, b := range bufs {
		iovs[i].Base = &b[0]
		iovs[i].SetLen(len(b))
	}
	if err := r.register(registerBuffers, unsafe.Pointer(&iovs[0]), uintptr(len(iovs))); err != nil {
		return os.NewSyscallError("io_uring_register buffers", err)
	}
	return nil
}

// UnregisterBuffers drops the registered buffers.
func (r *Ring) UnregisterBuffers() error {
	if err := r.register(unregisterBuffers, nil, 0); err != nil {
		return os.NewSyscallError("io_uring_unregister buffers", err)
	}
	return nil
}

// RegisterEventfd makes the kernel signal efd whenever it posts a CQE
// (IORING_REGISTER_EVENTFD, Linux 5.2).
func (r *Ring) RegisterEventfd(efd int) error {
	fd := int32(efd)
	if err := r.register(registerEventfd, unsafe.Pointer(&fd), 1); err != nil {
		return os.NewSyscallError("io_uring_register eventfd", err)
	}
	return nil
}

// Probe reports which opcodes the kernel supports (IORING_REGISTER_PROBE,
// Linux 5.6). It lists opcodes, not flags: a flag is probed by trying it.
func (r *Ring) Probe() (*Probe, error) {
	var p probeBuf
	if err := r.register(registerProbe, unsafe.Pointer(&p), probeOpsLen); err != nil {
		return nil, os.NewSyscallError("io_uring_register probe", err)
	}
	return decodeProbe(&p), nil
}

// decodeProbe reads the opcode list the kernel wrote into p: the first
// OpsLen entries (no more than p holds), each supported when it carries
// IO_URING_OP_SUPPORTED.
func decodeProbe(p *probeBuf) *Probe {
	pr := &Probe{lastOp: p.LastOp}
	for _, op := range p.Ops[:min(int(p.OpsLen), len(p.Ops))] {
		if op.Flags&ioUringOpSupported != 0 {
			pr.ops[op.Op/64] |= 1 << (op.Op % 64)
		}
	}
	return pr
}

// Close unmaps the rings and closes the ring's descriptor. The kernel cancels
// whatever is still in flight; callers that must wait for notifications do
// that before (Loop.Close does).
func (r *Ring) Close() error {
	if r.sqeMem != nil {
		unix.Munmap(r.sqeMem)
		r.sqeMem = nil
	}
	if r.ringMem != nil {
		unix.Munmap(r.ringMem)
		r.ringMem = nil
	}
	if r.fd >= 0 {
		err := unix.Close(r.fd)
		r.fd = -1
		return err
	}
	return nil
}

// Probe is the set of opcodes the running kernel supports.
type Probe struct {
	lastOp uint8
	ops    [4]uint64
}

// Supports reports whether the kernel supports opcode op.
func (p *Probe) Supports(op uint8) bool { return p.ops[op/64]&(1<<(op%64)) != 0 }

// OpName is the uapi name of op without the IORING_OP_ prefix.
func OpName(op uint8) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("op %d", op)
}
