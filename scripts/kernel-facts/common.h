/* Helpers shared by the kernel-facts probes: a loopback TCP pair and a
 * minimal io_uring (raw syscalls, no liburing). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define die(msg) do { perror(msg); exit(1); } while (0)

static inline double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* tcp_pair connects a client to a listener on 127.0.0.1 and returns both
 * ends. rcvbuf > 0 sets SO_RCVBUF on the listener before accept (so the
 * window the receiver advertises is small from the start). */
static inline void tcp_pair(int *snd, int *rcv, int rcvbuf)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t al = sizeof(a);
	int l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0) die("socket");
	if (rcvbuf > 0 && setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf))) die("SO_RCVBUF");
	if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1) || getsockname(l, (void *)&a, &al)) die("listen");
	*snd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*snd, (void *)&a, sizeof(a))) die("connect");
	*rcv = accept(l, NULL, NULL);
	if (*rcv < 0) die("accept");
	close(l);
}

struct ring {
	int fd;
	unsigned *sq_head, *sq_tail, *sq_mask, *sq_array;
	unsigned *cq_head, *cq_tail, *cq_mask;
	struct io_uring_sqe *sqes;
	struct io_uring_cqe *cqes;
};

static inline void ring_init(struct ring *r, unsigned entries)
{
	struct io_uring_params p = { 0 };
	r->fd = syscall(__NR_io_uring_setup, entries, &p);
	if (r->fd < 0) die("io_uring_setup");
	size_t sqsz = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cqsz = p.cq_off.cqes + p.cq_entries * sizeof(struct io_uring_cqe);
	char *sq = mmap(0, sqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING);
	char *cq = mmap(0, cqsz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING);
	r->sqes = mmap(0, p.sq_entries * sizeof(struct io_uring_sqe), PROT_READ | PROT_WRITE,
		       MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || r->sqes == MAP_FAILED) die("mmap ring");
	r->sq_head = (void *)(sq + p.sq_off.head);
	r->sq_tail = (void *)(sq + p.sq_off.tail);
	r->sq_mask = (void *)(sq + p.sq_off.ring_mask);
	r->sq_array = (void *)(sq + p.sq_off.array);
	r->cq_head = (void *)(cq + p.cq_off.head);
	r->cq_tail = (void *)(cq + p.cq_off.tail);
	r->cq_mask = (void *)(cq + p.cq_off.ring_mask);
	r->cqes = (void *)(cq + p.cq_off.cqes);
}

static inline struct io_uring_sqe *ring_sqe(struct ring *r)
{
	unsigned t = *r->sq_tail, i = t & *r->sq_mask;
	struct io_uring_sqe *s = &r->sqes[i];
	memset(s, 0, sizeof(*s));
	r->sq_array[i] = i;
	__atomic_store_n(r->sq_tail, t + 1, __ATOMIC_RELEASE);
	return s;
}

static inline int ring_enter(struct ring *r, unsigned submit, unsigned wait)
{
	int ret = syscall(__NR_io_uring_enter, r->fd, submit, wait, wait ? IORING_ENTER_GETEVENTS : 0, NULL, 0);
	if (ret < 0 && errno != EINTR && errno != ETIME) die("io_uring_enter");
	return ret;
}

/* ring_peek copies one CQE out if there is one. */
static inline int ring_peek(struct ring *r, struct io_uring_cqe *out)
{
	unsigned h = *r->cq_head;
	if (h == __atomic_load_n(r->cq_tail, __ATOMIC_ACQUIRE))
		return 0;
	*out = r->cqes[h & *r->cq_mask];
	__atomic_store_n(r->cq_head, h + 1, __ATOMIC_RELEASE);
	return 1;
}

static inline void ring_wait(struct ring *r, struct io_uring_cqe *out)
{
	while (!ring_peek(r, out))
		ring_enter(r, 0, 1);
}

/* ring_wait_for waits up to sec seconds for a CQE; 0 if none came. */
static inline int ring_wait_for(struct ring *r, struct io_uring_cqe *out, double sec)
{
	double end = now() + sec;
	while (!ring_peek(r, out)) {
		if (now() > end)
			return 0;
		usleep(1000);
	}
	return 1;
}

static inline void drain(int fd, size_t n)
{
	static char buf[1 << 20];
	while (n > 0) {
		ssize_t r = read(fd, buf, n < sizeof(buf) ? n : sizeof(buf));
		if (r <= 0) die("read");
		n -= r;
	}
}
