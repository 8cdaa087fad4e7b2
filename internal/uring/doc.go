// Package uring is sendfile2's own small io_uring binding: ring setup and
// memory mapping, submission and completion queues driven through sync/atomic,
// the opcode probe, registered buffers, and a Loop that lets many goroutines
// share one ring. The Loop waits for completions on an eventfd through Go's
// netpoller, so no goroutine spins and no OS thread is parked per request.
//
// Only Linux has io_uring; on other systems the package is empty.
package uring
