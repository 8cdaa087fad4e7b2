/* sendzc: what IORING_OP_SEND_ZC does on TCP over loopback.
 *
 *   gcc -O2 -o /tmp/sendzc sendzc.c && /tmp/sendzc
 *
 * Each line is one check: the two CQEs and their flags, the usage report,
 * when the notification comes (window open; window full), failed requests
 * that still carry F_MORE, short sends without MSG_WAITALL, O_NONBLOCK on
 * the socket, IOSQE_CQE_SKIP_SUCCESS, which memory can be registered, and
 * the RLIMIT_MEMLOCK charge (needs root: drops CAP_IPC_LOCK for that part). */
#include "common.h"
#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/wait.h>

#ifndef IORING_SEND_ZC_REPORT_USAGE
#define IORING_SEND_ZC_REPORT_USAGE (1U << 3)
#define IORING_NOTIF_USAGE_ZC_COPIED (1U << 31)
#endif

static char *buf;

static void prep_send(struct ring *r, int op, int fd, void *p, unsigned len, int msg_flags, int ioprio, uint64_t ud)
{
	struct io_uring_sqe *s = ring_sqe(r);
	s->opcode = op;
	s->fd = fd;
	s->addr = (uintptr_t)p;
	s->len = len;
	s->msg_flags = msg_flags;
	s->ioprio = ioprio;
	s->user_data = ud;
}

static const char *flags_str(unsigned f)
{
	static char bufs[4][64];
	static int i;
	char *s = bufs[i++ % 4];
	snprintf(s, 64, "%s%s%s", f & IORING_CQE_F_MORE ? "F_MORE " : "",
		 f & IORING_CQE_F_NOTIF ? "F_NOTIF " : "", f ? "" : "none");
	return s;
}

/* fill queues data with MSG_DONTWAIT until the socket takes no more. */
static size_t fill(int s)
{
	size_t n = 0;
	for (;;) {
		ssize_t k = send(s, buf, 65536, MSG_DONTWAIT);
		if (k < 0) {
			if (errno == EAGAIN) return n;
			die("fill");
		}
		n += k;
	}
}

static void two_cqes(struct ring *r)
{
	int s, rc;
	tcp_pair(&s, &rc, 0);
	struct io_uring_cqe c1, c2;
	double t0 = now();
	prep_send(r, IORING_OP_SEND_ZC, s, buf, 65536, 0, IORING_SEND_ZC_REPORT_USAGE, 7);
	ring_enter(r, 1, 0);
	ring_wait(r, &c1);
	double t1 = now();
	ring_wait(r, &c2);
	double t2 = now();
	printf("window open, 64 KiB SEND_ZC with REPORT_USAGE: CQE 1 res=%d flags=%s user_data=%llu (%.0f us); "
	       "CQE 2 res=0x%x flags=%s user_data=%llu (%.0f us after CQE 1); copied=%s\n",
	       c1.res, flags_str(c1.flags), (unsigned long long)c1.user_data, (t1 - t0) * 1e6,
	       (unsigned)c2.res, flags_str(c2.flags), (unsigned long long)c2.user_data, (t2 - t1) * 1e6,
	       (c2.res & IORING_NOTIF_USAGE_ZC_COPIED) ? "yes" : "no");
	drain(rc, 65536);
	close(s); close(rc);
}

static void window_full(struct ring *r)
{
	int s, rc;
	tcp_pair(&s, &rc, 4096);
	struct io_uring_cqe c1, c2;
	double t0 = now();
	prep_send(r, IORING_OP_SEND_ZC, s, buf, 65536, 0, IORING_SEND_ZC_REPORT_USAGE, 8);
	ring_enter(r, 1, 0);
	int got1 = ring_wait_for(r, &c1, 0.5);
	double t1 = now();
	int got2 = got1 && ring_wait_for(r, &c2, 0.5);
	printf("window full (receiver SO_RCVBUF 4096 set before accept, nobody reading), 64 KiB SEND_ZC: "
	       "result CQE %s (res=%d, %.0f us), notification after 0.5 s more: %s\n",
	       got1 ? "came" : "not yet", got1 ? c1.res : 0, (t1 - t0) * 1e6, got2 ? "came" : "not yet");
	t0 = now();
	drain(rc, 65536);
	if (!got1) ring_wait(r, &c1);
	if (!got2) ring_wait(r, &c2);
	printf("  once the receiver read the 64 KiB: notification %.0f us after reading began, copied=%s\n",
	       (now() - t0) * 1e6, (c2.res & IORING_NOTIF_USAGE_ZC_COPIED) ? "yes" : "no");
	close(s); close(rc);
}

/* reading_peer: the notification's delay when a peer reads as data comes. */
static void reading_peer(struct ring *r)
{
	int s, rc;
	tcp_pair(&s, &rc, 0);
	pid_t pid = fork();
	if (pid == 0) { close(s); static char b[1 << 20]; while (read(rc, b, sizeof(b)) > 0) {} _exit(0); }
	close(rc);
	usleep(50000);
	for (int i = 0; i < 5; i++) {
		struct io_uring_cqe c1, c2;
		prep_send(r, IORING_OP_SEND_ZC, s, buf, 65536, 0, IORING_SEND_ZC_REPORT_USAGE, 30 + i);
		double t0 = now();
		ring_enter(r, 1, 0);
		ring_wait(r, &c1);
		double t1 = now();
		ring_wait(r, &c2);
		printf("reading peer, 64 KiB SEND_ZC #%d: result after %.0f us, notification %.0f us after the result, copied=%s\n",
		       i + 1, (t1 - t0) * 1e6, (now() - t1) * 1e6, (c2.res & IORING_NOTIF_USAGE_ZC_COPIED) ? "yes" : "no");
	}
	close(s);
	waitpid(pid, NULL, 0);
}

static void failures(struct ring *r)
{
	struct io_uring_cqe c, n;
	int s, rc;
	/* -EAGAIN: MSG_DONTWAIT on a full socket. */
	tcp_pair(&s, &rc, 4096);
	fill(s);
	prep_send(r, IORING_OP_SEND_ZC, s, buf, 65536, MSG_DONTWAIT, 0, 9);
	ring_enter(r, 1, 0);
	ring_wait(r, &c);
	int notif = (c.flags & IORING_CQE_F_MORE) && ring_wait_for(r, &n, 2);
	printf("failed SEND_ZC (MSG_DONTWAIT, full socket): res=%d (%s) flags=%s; notification followed: %s\n",
	       c.res, strerror(-c.res), flags_str(c.flags), notif ? flags_str(n.flags) : "no");
	close(s); close(rc);
	/* -EPIPE: the socket was shut down for writing. */
	tcp_pair(&s, &rc, 0);
	shutdown(s, SHUT_WR);
	prep_send(r, IORING_OP_SEND_ZC, s, buf, 65536, 0, 0, 10);
	ring_enter(r, 1, 0);
	ring_wait(r, &c);
	notif = (c.flags & IORING_CQE_F_MORE) && ring_wait_for(r, &n, 2);
	printf("failed SEND_ZC (socket shut down for writing): res=%d (%s) flags=%s; notification followed: %s\n",
	       c.res, strerror(-c.res), flags_str(c.flags), notif ? flags_str(n.flags) : "no");
	/* -EINVAL at prep: an unknown ioprio flag. */
	prep_send(r, IORING_OP_SEND_ZC, s, buf, 65536, 0, 1 << 14, 11);
	ring_enter(r, 1, 0);
	ring_wait(r, &c);
	notif = (c.flags & IORING_CQE_F_MORE) && ring_wait_for(r, &n, 2);
	printf("failed SEND_ZC (unknown ioprio flag): res=%d (%s) flags=%s; notification followed: %s\n",
	       c.res, strerror(-c.res), flags_str(c.flags), notif ? flags_str(n.flags) : "no");
	/* IOSQE_CQE_SKIP_SUCCESS. */
	tcp_pair(&s, &rc, 0);
	struct io_uring_sqe *q = ring_sqe(r);
	q->opcode = IORING_OP_SEND_ZC; q->fd = s; q->addr = (uintptr_t)buf; q->len = 4096;
	q->flags = IOSQE_CQE_SKIP_SUCCESS; q->user_data = 12;
	ring_enter(r, 1, 0);
	ring_wait(r, &c);
	notif = (c.flags & IORING_CQE_F_MORE) && ring_wait_for(r, &n, 2);
	printf("SEND_ZC with IOSQE_CQE_SKIP_SUCCESS: res=%d (%s) flags=%s; notification followed: %s\n",
	       c.res, strerror(-c.res), flags_str(c.flags), notif ? flags_str(n.flags) : "no");
	close(s); close(rc);
}

/* short_send: 4 MiB to a receiver that starts reading 200 ms later. */
static void short_send(struct ring *r, int waitall)
{
	int s, rc;
	tcp_pair(&s, &rc, 0);
	size_t len = 4 << 20;
	pid_t pid = fork();
	if (pid == 0) {
		close(s);
		usleep(200000);
		static char b[1 << 20];
		while (read(rc, b, sizeof(b)) > 0) {}
		_exit(0);
	}
	close(rc);
	struct io_uring_cqe c, n;
	prep_send(r, IORING_OP_SEND_ZC, s, buf, len, waitall ? MSG_WAITALL : 0, 0, 13);
	ring_enter(r, 1, 0);
	ring_wait(r, &c);
	ring_wait(r, &n);
	printf("4 MiB SEND_ZC%s, receiver reading after 200 ms: res=%d (%s)\n", waitall ? " with MSG_WAITALL" : " without MSG_WAITALL",
	       c.res, c.res == (int)len ? "whole" : "short");
	close(s);
	waitpid(pid, NULL, 0);
}

static void nonblock(struct ring *r, int op)
{
	int s, rc;
	tcp_pair(&s, &rc, 4096);
	fcntl(s, F_SETFL, fcntl(s, F_GETFL) | O_NONBLOCK);
	size_t filled = fill(s);
	struct io_uring_cqe c;
	const char *name = op == IORING_OP_SEND ? "SEND" : "SEND_ZC";
	prep_send(r, op, s, buf, 65536, 0, 0, 14);
	ring_enter(r, 1, 0);
	int got = ring_wait_for(r, &c, 0.5);
	printf("%s on a full O_NONBLOCK socket: %s", name, got ? "completed" : "no CQE after 0.5 s (waiting for room)");
	if (got) printf(" res=%d", c.res);
	drain(rc, filled);
	if (!got) { ring_wait(r, &c); printf("; after the receiver read: res=%d", c.res); }
	printf("\n");
	drain(rc, c.res);
	if (op == IORING_OP_SEND_ZC) { struct io_uring_cqe n; ring_wait(r, &n); }
	close(s); close(rc);
}

static void register_kinds(struct ring *r)
{
	size_t len = 1 << 20;
	struct { const char *name; void *p; } kinds[3];
	kinds[0].name = "anonymous mmap";
	kinds[0].p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int mfd = memfd_create("kf", 0);
	if (ftruncate(mfd, len)) die("memfd");
	kinds[1].name = "memfd (shmem) MAP_SHARED";
	kinds[1].p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
	int ffd = open("register-probe.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
	if (ffd < 0 || ftruncate(ffd, len)) die("file");
	kinds[2].name = "ext4 file MAP_SHARED";
	kinds[2].p = mmap(0, len, PROT_READ | PROT_WRITE, MAP_SHARED, ffd, 0);
	for (int i = 0; i < 3; i++) {
		memset(kinds[i].p, 1, len);
		struct iovec iov = { kinds[i].p, len };
		int ret = syscall(__NR_io_uring_register, r->fd, IORING_REGISTER_BUFFERS, &iov, 1);
		printf("IORING_REGISTER_BUFFERS of 1 MiB of %s: %s\n", kinds[i].name, ret < 0 ? strerror(errno) : "ok");
		if (ret == 0) syscall(__NR_io_uring_register, r->fd, IORING_UNREGISTER_BUFFERS, NULL, 0);
	}
	unlink("register-probe.dat");
}

static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d)) die("capget");
	d[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &h, d)) die("capset");
}

static void memlock(void)
{
	drop_ipc_lock();
	struct rlimit rl = { 256 << 10, 256 << 10 };
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) die("setrlimit");
	struct ring r;
	ring_init(&r, 8); /* the ring is charged to its creator's limit */
	int s, rc;
	tcp_pair(&s, &rc, 0);
	pid_t pid = fork();
	if (pid == 0) { close(s); static char b[1 << 20]; while (read(rc, b, sizeof(b)) > 0) {} _exit(0); }
	close(rc);
	unsigned sizes[] = { 64 << 10, 4 << 20 };
	for (int i = 0; i < 2; i++) {
		struct io_uring_cqe c, n;
		prep_send(&r, IORING_OP_SEND_ZC, s, buf, sizes[i], MSG_WAITALL, 0, 20 + i);
		ring_enter(&r, 1, 0);
		ring_wait(&r, &c);
		if (c.flags & IORING_CQE_F_MORE) ring_wait(&r, &n);
		printf("without CAP_IPC_LOCK, RLIMIT_MEMLOCK 256 KiB: SEND_ZC of %u KiB from unregistered memory: res=%d%s%s\n",
		       sizes[i] >> 10, c.res, c.res < 0 ? " " : "", c.res < 0 ? strerror(-c.res) : "");
	}
	struct iovec iov = { buf, 1 << 20 };
	int ret = syscall(__NR_io_uring_register, r.fd, IORING_REGISTER_BUFFERS, &iov, 1);
	printf("without CAP_IPC_LOCK, RLIMIT_MEMLOCK 256 KiB: IORING_REGISTER_BUFFERS of 1 MiB: %s\n", ret < 0 ? strerror(errno) : "ok");
	close(s);
	waitpid(pid, NULL, 0);
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	buf = mmap(0, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(buf, 'x', 4 << 20);
	struct ring r;
	ring_init(&r, 64);
	two_cqes(&r);
	window_full(&r);
	reading_peer(&r);
	failures(&r);
	short_send(&r, 0);
	short_send(&r, 1);
	nonblock(&r, IORING_OP_SEND);
	nonblock(&r, IORING_OP_SEND_ZC);
	register_kinds(&r);
	if (geteuid() == 0) {
		pid_t pid = fork();
		if (pid == 0) { memlock(); _exit(0); }
		waitpid(pid, NULL, 0);
	}
	return 0;
}
