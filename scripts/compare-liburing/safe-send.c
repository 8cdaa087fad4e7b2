// safe-send: liburing's zero-copy send held to sendfile2's contract, as the C
// reference for scripts/compare-liburing.sh. liburing's examples/send-zerocopy
// reuses its one registered buffer as soon as a send's result arrives, without
// waiting for the notification that the kernel has let go of the data; a safe
// send must wait for it before the buffer (or the file behind it) may change.
//
//   safe-send single SIZE PORT SECONDS
//       one IORING_OP_SEND_ZC of SIZE bytes from a registered buffer at a
//       time; the next only after both the result and the notification
//       (one sendfile2 Send of SIZE bytes).
//   safe-send pipe SIZE BUFFERS PORT SECONDS
//       BUFFERS registered buffers of SIZE bytes, each filled with memcpy from
//       a 64 MiB source before it is sent; while no send is in flight, the
//       free buffers (up to 8) go out as one IOSQE_IO_LINK chain with
//       MSG_WAITALL; a buffer is free again after its notification (the
//       design of sendfile2's uring engine for one large Send).
//
// It connects to 127.0.0.1:PORT (send-zerocopy's receiver, -R), sets up its
// ring as send-zerocopy does (COOP_TASKRUN, SINGLE_ISSUER, 512 entries) and
// prints MB/s=N as send-zerocopy does (bytes sent / elapsed, MB = 1e6).
// With the environment variable SAFE_SEND_PLAIN_RING=1 the ring is set up
// without flags, as sendfile2's is (a Go program cannot promise either: its
// sends come from many threads, and an idle thread sleeps in futex(2), where
// COOP_TASKRUN's task work would not wake it).
//
// With SAFE_SEND_NETPOLL=1 as well, "pipe" waits the way a Go program must
// (Go's netpoller the only place it blocks): the ring signals an eventfd; a
// second thread, the reaper, waits for it in epoll_wait(2), drains the
// completion queue and wakes the sending thread through a condition
// variable, where it waits for a free buffer. The sending thread never waits
// in io_uring_enter; after each submission it drains the queue itself if
// the reaper is not draining it, with the eventfd quiet during the
// io_uring_enter (IORING_CQ_EVENTFD_DISABLED). That is sendfile2's uring
// engine's design for one large Send (internal/uring's Loop), in C.
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "safe-send: %s: %s\n", what, strerror(err < 0 ? -err : err));
	exit(1);
}

static void usage(void)
{
	fprintf(stderr, "usage: safe-send single SIZE PORT SECONDS\n"
			"       safe-send pipe SIZE BUFFERS PORT SECONDS\n");
	exit(2);
}

/* The state of a pipe in SAFE_SEND_NETPOLL mode, shared by the sending
 * thread and the reaper. */
struct np {
	struct io_uring ring;
	int efd, size, nbufs;
	pthread_mutex_t mu; /* guards what follows */
	pthread_cond_t cv;  /* a buffer came free, or no send is in flight */
	int free_bufs[256], nfree, sending, pending;
	long long bytes;
	pthread_mutex_t reap_mu; /* one drain of the queue at a time */
	atomic_int again;        /* a drain found reap_mu held */
};

static void np_cqe(struct np *p, struct io_uring_cqe *cqe)
{
	int b = (int)cqe->user_data;

	pthread_mutex_lock(&p->mu);
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		p->free_bufs[p->nfree++] = b;
		p->pending--;
	} else {
		if (cqe->res < 0)
			die("send zc", cqe->res);
		if (cqe->res != p->size)
			die("send zc: short send", EIO);
		p->bytes += cqe->res;
		p->sending--;
		if (!(cqe->flags & IORING_CQE_F_MORE)) {
			p->free_bufs[p->nfree++] = b;
			p->pending--;
		}
	}
	pthread_cond_signal(&p->cv);
	pthread_mutex_unlock(&p->mu);
}

/* np_drain drains the completion queue; the caller holds reap_mu, which it
 * unlocks, draining again while another drain found it held. */
static void np_drain(struct np *p)
{
	for (;;) {
		struct io_uring_cqe *cqe;

		atomic_store(&p->again, 0);
		while (!io_uring_peek_cqe(&p->ring, &cqe)) {
			np_cqe(p, cqe);
			io_uring_cqe_seen(&p->ring, cqe);
		}
		pthread_mutex_unlock(&p->reap_mu);
		if (!atomic_load(&p->again) || pthread_mutex_trylock(&p->reap_mu))
			return;
	}
}

static void *np_reaper(void *arg)
{
	struct np *p = arg;
	struct epoll_event ev = { .events = EPOLLIN | EPOLLET };
	int ep = epoll_create1(0);
	uint64_t v;

	if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, p->efd, &ev))
		die("epoll", errno);
	for (;;) {
		if (epoll_wait(ep, &ev, 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait", errno);
		}
		while (read(p->efd, &v, sizeof(v)) > 0)
			;
		pthread_mutex_lock(&p->reap_mu);
		np_drain(p);
	}
	return NULL;
}

static void np_quiet(struct np *p, int quiet)
{
	unsigned *flags = p->ring.cq.kflags;

	if (quiet)
		atomic_store_explicit((_Atomic unsigned *)flags, *flags | IORING_CQ_EVENTFD_DISABLED, memory_order_release);
	else
		atomic_store_explicit((_Atomic unsigned *)flags, *flags & ~IORING_CQ_EVENTFD_DISABLED, memory_order_release);
}

static long long run_netpoll(int fd, int size, int nbufs, int seconds, double *elapsed)
{
	static struct np p;
	size_t src_len = 64 << 20, src_off = 0;
	struct iovec iov;
	char *buf, *src;
	pthread_t reaper;
	double start;
	int ret;

	p.size = size;
	p.nbufs = nbufs;
	pthread_mutex_init(&p.mu, NULL);
	pthread_cond_init(&p.cv, NULL);
	pthread_mutex_init(&p.reap_mu, NULL);
	ret = io_uring_queue_init(512, &p.ring, 0);
	if (ret)
		die("io_uring_queue_init", ret);
	p.efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (p.efd < 0)
		die("eventfd", errno);
	ret = io_uring_register_eventfd(&p.ring, p.efd);
	if (ret)
		die("io_uring_register_eventfd", ret);
	buf = aligned_alloc(4096, (size_t)size * nbufs);
	src = malloc(src_len);
	if (!buf || !src)
		die("malloc", ENOMEM);
	memset(buf, 'x', (size_t)size * nbufs);
	memset(src, 'y', src_len);
	iov.iov_base = buf;
	iov.iov_len = (size_t)size * nbufs;
	ret = io_uring_register_buffers(&p.ring, &iov, 1);
	if (ret)
		die("io_uring_register_buffers", ret);
	for (p.nfree = 0; p.nfree < nbufs; p.nfree++)
		p.free_bufs[p.nfree] = p.nfree;
	ret = pthread_create(&reaper, NULL, np_reaper, &p);
	if (ret)
		die("pthread_create", ret);

	start = now();
	for (;;) {
		int take[8], n;

		pthread_mutex_lock(&p.mu);
		while (p.sending || !p.nfree)
			pthread_cond_wait(&p.cv, &p.mu);
		if (now() - start >= seconds) {
			while (p.pending)
				pthread_cond_wait(&p.cv, &p.mu);
			pthread_mutex_unlock(&p.mu);
			break;
		}
		n = p.nfree < 8 ? p.nfree : 8;
		for (int i = 0; i < n; i++)
			take[i] = p.free_bufs[--p.nfree];
		p.sending = n;
		p.pending += n;
		pthread_mutex_unlock(&p.mu);
		for (int i = 0; i < n; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(&p.ring);
			char *b = buf + (size_t)take[i] * size;

			memcpy(b, src + src_off, size);
			src_off = (src_off + size) % (src_len - size);
			io_uring_prep_send_zc_fixed(sqe, fd, b, size, MSG_WAITALL, 0, 0);
			sqe->user_data = take[i];
			if (i < n - 1)
				sqe->flags |= IOSQE_IO_LINK;
		}
		np_quiet(&p, 1);
		ret = io_uring_submit(&p.ring);
		np_quiet(&p, 0);
		if (ret != n)
			die("io_uring_submit", ret < 0 ? ret : EAGAIN);
		atomic_store(&p.again, 1);
		if (!pthread_mutex_trylock(&p.reap_mu))
			np_drain(&p);
	}
	*elapsed = now() - start;
	return p.bytes;
}

int main(int argc, char **argv)
{
	int pipe_mode, size, nbufs = 1, port, seconds, fd, ret;
	struct sockaddr_in addr = { .sin_family = AF_INET };
	struct io_uring ring;
	struct iovec iov;
	char *buf, *src = NULL;
	size_t src_len = 64 << 20, src_off = 0;
	int free_bufs[256], nfree, sending = 0, pending = 0;
	long long bytes = 0;
	double start;

	if (argc < 2)
		usage();
	pipe_mode = !strcmp(argv[1], "pipe");
	if (argc != (pipe_mode ? 6 : 5) || (!pipe_mode && strcmp(argv[1], "single")))
		usage();
	size = atoi(argv[2]);
	if (pipe_mode)
		nbufs = atoi(argv[3]);
	port = atoi(argv[argc - 2]);
	seconds = atoi(argv[argc - 1]);
	if (size <= 0 || nbufs <= 0 || nbufs > 256 || port <= 0 || seconds <= 0)
		usage();

	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0)
		die("socket", errno);
	addr.sin_port = htons(port);
	inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
	if (connect(fd, (void *)&addr, sizeof(addr)))
		die("connect", errno);
	if (pipe_mode && getenv("SAFE_SEND_NETPOLL")) {
		double elapsed;

		bytes = run_netpoll(fd, size, nbufs, seconds, &elapsed);
		printf("MB/s=%lld\n", (long long)(bytes / elapsed / 1e6));
		return 0;
	}
	ret = io_uring_queue_init(512, &ring, getenv("SAFE_SEND_PLAIN_RING") ? 0 : IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER);
	if (ret)
		die("io_uring_queue_init", ret);
	buf = aligned_alloc(4096, (size_t)size * nbufs);
	if (!buf)
		die("aligned_alloc", ENOMEM);
	memset(buf, 'x', (size_t)size * nbufs);
	if (pipe_mode) {
		src = malloc(src_len);
		if (!src)
			die("malloc", ENOMEM);
		memset(src, 'y', src_len);
	}
	iov.iov_base = buf;
	iov.iov_len = (size_t)size * nbufs;
	ret = io_uring_register_buffers(&ring, &iov, 1);
	if (ret)
		die("io_uring_register_buffers", ret);
	for (nfree = 0; nfree < nbufs; nfree++)
		free_bufs[nfree] = nfree;

	start = now();
	while (now() - start < seconds || pending) {
		struct io_uring_cqe *cqe;
		int b;

		if (!sending && nfree && now() - start < seconds) {
			int n = nfree < 8 ? nfree : 8;

			for (int i = 0; i < n; i++) {
				struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
				char *p;

				b = free_bufs[--nfree];
				p = buf + (size_t)b * size;
				if (src) {
					memcpy(p, src + src_off, size);
					src_off = (src_off + size) % (src_len - size);
				}
				io_uring_prep_send_zc_fixed(sqe, fd, p, size, MSG_WAITALL, 0, 0);
				sqe->user_data = b;
				if (i < n - 1)
					sqe->flags |= IOSQE_IO_LINK;
			}
			ret = io_uring_submit(&ring);
			if (ret != n)
				die("io_uring_submit", ret < 0 ? ret : EAGAIN);
			sending = n;
			pending += n;
		}
		ret = io_uring_wait_cqe(&ring, &cqe);
		if (ret)
			die("io_uring_wait_cqe", ret);
		b = (int)cqe->user_data;
		if (cqe->flags & IORING_CQE_F_NOTIF) {
			free_bufs[nfree++] = b;
			pending--;
		} else {
			if (cqe->res < 0)
				die("send zc", cqe->res);
			if (cqe->res != size)
				die("send zc: short send", EIO);
			bytes += cqe->res;
			sending--;
			if (!(cqe->flags & IORING_CQE_F_MORE)) {
				free_bufs[nfree++] = b;
				pending--;
			}
		}
		io_uring_cqe_seen(&ring, cqe);
	}
	printf("MB/s=%lld\n", (long long)(bytes / (now() - start) / 1e6));
	return 0;
}
