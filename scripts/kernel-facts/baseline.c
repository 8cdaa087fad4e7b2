/* baseline: GB/s and sender CPU of the plain ways to send a cached file over
 * TCP on loopback: sendfile(2), splice(2) through a pipe, pread(2)+write(2),
 * send(2) from an mmap of the file. 1 GiB per round from a 64 MiB file, a
 * receiver process reading 1 MiB at a time; methods interleaved round by
 * round; prints the median and range over the rounds of GB/s and of the
 * CPU time of the sender process and of the receiver process per GiB.
 *
 *   gcc -O2 -o /tmp/baseline baseline.c && /tmp/baseline [ROUNDS] [DIR]
 *
 * So that other senders (sendfile2's) can be measured against the same
 * receiver, it also runs as that receiver alone, and can send to it:
 *
 *   baseline recv PORT
 *       listens on 127.0.0.1:PORT and takes one connection after another,
 *       each read 1 MiB at a time until its end, then closed; prints
 *       "recv bytes=N cpu_s=S" per connection (S: this process's CPU
 *       seconds over it). It runs until killed.
 *   BASELINE_PORT=PORT baseline [ROUNDS] [DIR]
 *       sends each round to that receiver instead of a forked one: after the
 *       last byte it shuts down its side and waits for the receiver's end;
 *       its receiver CPU column is then 0 (the receiver prints its own).
 */
#include "common.h"
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/wait.h>

#define FILE_SIZE (64UL << 20)
#define TOTAL (1UL << 30)

struct method { const char *name; size_t chunk; int kind; };
enum { SENDFILE, SPLICE, PREAD, MMAP };
static struct method methods[] = {
	{ "sendfile, 1 MiB calls (unsafe)", 1 << 20, SENDFILE },
	{ "splice via pipe, 1 MiB (unsafe)", 1 << 20, SPLICE },
	{ "pread + write, 1 MiB", 1 << 20, PREAD },
	{ "pread + write, 64 KiB", 64 << 10, PREAD },
	{ "mmap + send, 1 MiB (unsafe)", 1 << 20, MMAP },
};
#define NM (sizeof(methods) / sizeof(methods[0]))

static double cpu_of(int who)
{
	struct rusage ru;
	getrusage(who, &ru);
	return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void writeall(int s, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t k = write(s, p, n);
		if (k <= 0) die("write");
		p += k; n -= k;
	}
}

/* connect_to connects to the receiver at 127.0.0.1:port. */
static int connect_to(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0 || connect(s, (void *)&a, sizeof(a))) die("connect");
	return s;
}

/* receive_loop is "baseline recv PORT": the receiver of run, alone. */
static int receive_loop(int port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	static char b[1 << 20];
	int one = 1, l = socket(AF_INET, SOCK_STREAM, 0);
	if (l < 0 || setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) || bind(l, (void *)&a, sizeof(a)) || listen(l, 8))
		die("listen");
	for (;;) {
		int rc = accept(l, NULL, NULL);
		if (rc < 0) die("accept");
		double c0 = cpu_of(RUSAGE_SELF);
		long long n = 0;
		ssize_t k;
		while ((k = read(rc, b, sizeof(b))) > 0) n += k;
		close(rc);
		printf("recv bytes=%lld cpu_s=%.4f\n", n, cpu_of(RUSAGE_SELF) - c0);
		fflush(stdout);
	}
}

static void run(struct method *m, int fd, char *map, double *gbs, double *cpus, double *rcpus)
{
	static char *buf;
	if (!buf) buf = malloc(1 << 20);
	int s, rc = -1, p[2];
	pid_t pid = -1;
	const char *port = getenv("BASELINE_PORT");
	if (port) {
		s = connect_to(atoi(port));
	} else {
		tcp_pair(&s, &rc, 0);
		pid = fork();
		if (pid == 0) { close(s); static char b[1 << 20]; while (read(rc, b, sizeof(b)) > 0) {} _exit(0); }
		close(rc);
	}
	if (m->kind == SPLICE && pipe(p)) die("pipe");
	if (m->kind == SPLICE) fcntl(p[1], F_SETPIPE_SZ, 1 << 20);
	double t0 = now(), c0 = cpu_of(RUSAGE_SELF), r0 = cpu_of(RUSAGE_CHILDREN);
	for (size_t sent = 0; sent < TOTAL;) {
		size_t off = sent % FILE_SIZE, n = m->chunk;
		ssize_t k;
		switch (m->kind) {
		case SENDFILE: { off_t o = off; k = sendfile(s, fd, &o, n); break; }
		case SPLICE: {
			loff_t o = off;
			k = splice(fd, &o, p[1], NULL, n, SPLICE_F_MOVE);
			for (ssize_t left = k; left > 0;) {
				ssize_t w = splice(p[0], NULL, s, NULL, left, SPLICE_F_MOVE);
				if (w <= 0) die("splice out");
				left -= w;
			}
			break;
		}
		case PREAD: k = pread(fd, buf, n, off); if (k > 0) writeall(s, buf, k); break;
		default: writeall(s, map + off, n); k = n; break;
		}
		if (k <= 0) die(m->name);
		sent += k;
	}
	if (pid < 0) { /* the receiver closes after the last byte */
		char b;
		if (shutdown(s, SHUT_WR) || read(s, &b, 1) != 0) die("the receiver's end");
	} else {
		waitpid(pid, NULL, 0); /* the receiver has read everything */
	}
	close(s);
	double t = now() - t0;
	*gbs = TOTAL / t / 1e9;
	*cpus = (cpu_of(RUSAGE_SELF) - c0) / (TOTAL / (double)(1 << 30));
	*rcpus = (cpu_of(RUSAGE_CHILDREN) - r0) / (TOTAL / (double)(1 << 30));
	if (m->kind == SPLICE) { close(p[0]); close(p[1]); }
}

static int cmp(const void *a, const void *b) { double x = *(double *)a, y = *(double *)b; return (x > y) - (x < y); }

int main(int argc, char **argv)
{
	if (argc == 3 && !strcmp(argv[1], "recv"))
		return receive_loop(atoi(argv[2]));
	int rounds = argc > 1 ? atoi(argv[1]) : 5;
	const char *dir = argc > 2 ? argv[2] : ".";
	char path[4096];
	snprintf(path, sizeof(path), "%s/baseline-probe.dat", dir);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
	char *blk = malloc(1 << 20);
	for (int i = 0; i < 1 << 20; i++) blk[i] = i * 7;
	for (size_t o = 0; o < FILE_SIZE; o += 1 << 20) if (pwrite(fd, blk, 1 << 20, o) != 1 << 20) die("pwrite");
	fsync(fd);
	char *map = mmap(0, FILE_SIZE, PROT_READ, MAP_SHARED | MAP_POPULATE, fd, 0);
	double g[NM][64], c[NM][64], rcv[NM][64];
	for (int r = 0; r < rounds; r++)
		for (size_t i = 0; i < NM; i++)
			run(&methods[i], fd, map, &g[i][r], &c[i][r], &rcv[i][r]);
	printf("| method | GB/s median (min-max) | sender CPU s/GiB median (min-max) | receiver CPU s/GiB median (min-max) |\n|---|---|---|---|\n");
	for (size_t i = 0; i < NM; i++) {
		qsort(g[i], rounds, sizeof(double), cmp);
		qsort(c[i], rounds, sizeof(double), cmp);
		qsort(rcv[i], rounds, sizeof(double), cmp);
		printf("| %s | %.2f (%.2f-%.2f) | %.3f (%.3f-%.3f) | %.3f (%.3f-%.3f) |\n", methods[i].name, g[i][rounds / 2], g[i][0],
		       g[i][rounds - 1], c[i][rounds / 2], c[i][0], c[i][rounds - 1], rcv[i][rounds / 2], rcv[i][0], rcv[i][rounds - 1]);
	}
	unlink(path);
	return 0;
}
