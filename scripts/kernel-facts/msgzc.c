/* msgzc: MSG_ZEROCOPY on TCP over loopback: what SO_ZEROCOPY changes, the
 * error-queue notifications (range, coalescing, COPIED), and the two limits
 * that give ENOBUFS (RLIMIT_MEMLOCK without CAP_IPC_LOCK; optmem_max, set low
 * in a network namespace of its own). The limit checks need root.
 *
 *   gcc -O2 -o /tmp/msgzc msgzc.c && /tmp/msgzc
 */
#include "common.h"
#include <linux/capability.h>
#include <linux/errqueue.h>
#include <net/if.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/wait.h>

#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

static char *buf;

static pid_t reader(int rc, int s)
{
	pid_t pid = fork();
	if (pid == 0) { close(s); static char b[1 << 20]; while (read(rc, b, sizeof(b)) > 0) {} _exit(0); }
	close(rc);
	return pid;
}

/* notifications reads the error queue until `want` sends are covered or 1 s
 * passes; prints each notification. Returns the sends covered. */
static unsigned notifications(int s, unsigned want, int print)
{
	unsigned covered = 0, n = 0;
	double end = now() + 1;
	while (covered < want && now() < end) {
		struct pollfd p = { s, 0, 0 };
		poll(&p, 1, 100); /* POLLERR is reported even when not asked for */
		char ctrl[128];
		struct msghdr m = { .msg_control = ctrl, .msg_controllen = sizeof(ctrl) };
		if (recvmsg(s, &m, MSG_ERRQUEUE) < 0) {
			if (errno == EAGAIN) continue;
			die("recvmsg MSG_ERRQUEUE");
		}
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
			if (!((c->cmsg_level == SOL_IP && c->cmsg_type == IP_RECVERR) ||
			      (c->cmsg_level == SOL_IPV6 && c->cmsg_type == IPV6_RECVERR)))
				continue;
			struct sock_extended_err *e = (void *)CMSG_DATA(c);
			covered += e->ee_data - e->ee_info + 1;
			n++;
			if (print)
				printf("  notification %u: cmsg level %d type %d, ee_errno=%u ee_origin=%u ee_info=%u ee_data=%u ee_code=%u%s\n",
				       n, c->cmsg_level, c->cmsg_type, e->ee_errno, e->ee_origin, e->ee_info, e->ee_data,
				       e->ee_code, e->ee_code & SO_EE_CODE_ZEROCOPY_COPIED ? " (COPIED)" : "");
		}
	}
	return covered;
}

static void basic(void)
{
	int s, rc;
	tcp_pair(&s, &rc, 0);
	pid_t pid = reader(rc, s);
	ssize_t k = send(s, buf, 65536, MSG_ZEROCOPY);
	unsigned got = notifications(s, 1, 0);
	printf("MSG_ZEROCOPY without SO_ZEROCOPY: send returned %zd, notifications: %u\n", k, got);
	int one = 1;
	if (setsockopt(s, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one))) die("SO_ZEROCOPY");
	for (int i = 0; i < 16; i++)
		if (send(s, buf, 65536, MSG_ZEROCOPY) != 65536) die("send");
	printf("SO_ZEROCOPY set, 16 sends of 64 KiB with MSG_ZEROCOPY (a peer reading), then the error queue:\n");
	got = notifications(s, 16, 1);
	printf("  %u sends covered\n", got);
	close(s);
	waitpid(pid, NULL, 0);
}

static void drop_ipc_lock(void)
{
	struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
	struct __user_cap_data_struct d[2];
	if (syscall(SYS_capget, &h, d)) die("capget");
	d[CAP_IPC_LOCK / 32].effective &= ~(1U << (CAP_IPC_LOCK % 32));
	if (syscall(SYS_capset, &h, d)) die("capset");
}

static void try_send(const char *what, size_t len)
{
	int s, rc, one = 1;
	tcp_pair(&s, &rc, 0);
	pid_t pid = reader(rc, s);
	setsockopt(s, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one));
	ssize_t k = send(s, buf, len, MSG_ZEROCOPY);
	printf("%s: send of %zu KiB with MSG_ZEROCOPY: %zd%s%s\n", what, len >> 10, k,
	       k < 0 ? " " : "", k < 0 ? strerror(errno) : "");
	close(s);
	waitpid(pid, NULL, 0);
}

static void memlock(void)
{
	drop_ipc_lock();
	struct rlimit rl = { 64 << 10, 64 << 10 };
	if (setrlimit(RLIMIT_MEMLOCK, &rl)) die("setrlimit");
	try_send("without CAP_IPC_LOCK, RLIMIT_MEMLOCK 64 KiB", 32 << 10);
	try_send("without CAP_IPC_LOCK, RLIMIT_MEMLOCK 64 KiB", 256 << 10);
}

static void optmem(void)
{
	if (unshare(CLONE_NEWNET)) die("unshare");
	int s = socket(AF_INET, SOCK_DGRAM, 0);
	struct ifreq ifr = { 0 };
	strcpy(ifr.ifr_name, "lo");
	ioctl(s, SIOCGIFFLAGS, &ifr);
	ifr.ifr_flags |= IFF_UP;
	if (ioctl(s, SIOCSIFFLAGS, &ifr)) die("lo up");
	close(s);
	const char *vals[] = { "131072", "256" };
	for (int i = 0; i < 2; i++) {
		int fd = open("/proc/sys/net/core/optmem_max", O_WRONLY);
		if (fd < 0 || write(fd, vals[i], strlen(vals[i])) < 0) { perror("optmem_max in the namespace"); return; }
		close(fd);
		char what[64];
		snprintf(what, sizeof(what), "net.core.optmem_max %s (own netns)", vals[i]);
		try_send(what, 64 << 10);
	}
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	buf = mmap(0, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	memset(buf, 'x', 1 << 20);
	basic();
	if (geteuid() == 0) {
		pid_t pid = fork();
		if (pid == 0) { memlock(); _exit(0); }
		waitpid(pid, NULL, 0);
		pid = fork();
		if (pid == 0) { optmem(); _exit(0); }
		waitpid(pid, NULL, 0);
	}
	return 0;
}
