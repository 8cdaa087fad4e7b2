// Package uring is sendfile2's own small io_uring binding: ring setup and
// memory mapping, submission and completion queues driven through sync/atomic,
// the opcode probe, registered buffers, and a Loop that lets many goroutines
// share one ring.
//
// A Loop runs in one of two modes. By default submitters enter the ring
// themselves, under a mutex, and a reaper goroutine waits for completions on
// an eventfd through Go's netpoller, so no goroutine spins and no OS thread is
// parked per request; the kernel's task work interrupts whichever thread
// submitted. With Config.Thread, one goroutine locked to its OS thread is the
// only one that enters the ring, set up with IORING_SETUP_SINGLE_ISSUER and
// IORING_SETUP_DEFER_TASKRUN (Linux 6.1), or else COOP_TASKRUN and
// TASKRUN_FLAG (5.19), or else neither: task work runs in that thread's
// io_uring_enter, in batches. One OS thread per Loop, not per request; the
// thread sleeps in io_uring_enter and is woken through an eventfd it reads
// in its own ring. It costs a hand-off between threads at each submission
// and completion, and on loopback it was slower (docs/BENCHMARKS.md).
//
// Only Linux has io_uring; on other systems the package is empty.
package uring
