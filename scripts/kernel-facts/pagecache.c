/* pagecache: does a write to a file after sendfile(2)/splice(2) returned reach
 * the peer? Sends a 256 KiB file of 'A' over TCP on loopback, then overwrites
 * it with 'B' (or truncates it to 1000 bytes) once the call has returned, and
 * only then lets the receiver read. Prints the bytes received that are not 'A'.
 * With NS_SEND NS_RECV ADDR (network namespaces under /var/run/netns, as
 * pagecache-veth.sh makes them), the receiver's socket lives in NS_RECV at
 * ADDR and the sender's in NS_SEND: TCP across a veth pair.
 *
 *   gcc -O2 -o /tmp/pagecache pagecache.c && /tmp/pagecache [DIR [NS_SEND NS_RECV ADDR]]
 */
#include "common.h"
#include <arpa/inet.h>
#include <sched.h>
#include <sys/sendfile.h>

static const char *ns_send, *ns_recv, *ns_addr;

static void enter_ns(const char *name)
{
	char p[256];
	snprintf(p, sizeof(p), "/var/run/netns/%s", name);
	int fd = open(p, O_RDONLY);
	if (fd < 0 || setns(fd, CLONE_NEWNET)) die(p);
	close(fd);
}

/* veth_pair is tcp_pair across two namespaces: a socket keeps the namespace
 * it was created in. */
static void veth_pair(int *snd, int *rcv)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(45871) };
	inet_pton(AF_INET, ns_addr, &a.sin_addr);
	enter_ns(ns_recv);
	int l = socket(AF_INET, SOCK_STREAM, 0), one = 1;
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(l, (void *)&a, sizeof(a)) || listen(l, 1)) die("listen");
	enter_ns(ns_send);
	*snd = socket(AF_INET, SOCK_STREAM, 0);
	if (connect(*snd, (void *)&a, sizeof(a))) die("connect");
	*rcv = accept(l, NULL, NULL);
	if (*rcv < 0) die("accept");
	close(l);
}

#define SIZE (256 << 10)

enum { SENDFILE, SPLICE, PREAD_WRITE };
static const char *names[] = { "sendfile", "splice file->pipe->socket", "pread+write" };

static void send_file(int method, int fd, int s)
{
	static char buf[SIZE];
	size_t done = 0;
	int p[2];
	if (method == SPLICE && pipe(p)) die("pipe");
	while (done < SIZE) {
		ssize_t n;
		if (method == SENDFILE) {
			off_t off = done;
			n = sendfile(s, fd, &off, SIZE - done);
		} else if (method == SPLICE) {
			loff_t off = done;
			n = splice(fd, &off, p[1], NULL, SIZE - done, 0);
			for (ssize_t m = n; m > 0;) {
				ssize_t k = splice(p[0], NULL, s, NULL, m, 0);
				if (k <= 0) die("splice to socket");
				m -= k;
			}
		} else {
			n = pread(fd, buf, SIZE - done, done);
			for (ssize_t w = 0; w < n;) {
				ssize_t k = write(s, buf + w, n - w);
				if (k <= 0) die("write");
				w += k;
			}
		}
		if (n <= 0) die(names[method]);
		done += n;
	}
	if (method == SPLICE) { close(p[0]); close(p[1]); }
}

int main(int argc, char **argv)
{
	const char *dir = argc > 1 ? argv[1] : ".";
	if (argc > 4) { ns_send = argv[2]; ns_recv = argv[3]; ns_addr = argv[4]; }
	char path[4096];
	snprintf(path, sizeof(path), "%s/pagecache-probe.dat", dir);
	static char a[SIZE], b[SIZE], got[SIZE];
	memset(a, 'A', SIZE);
	memset(b, 'B', SIZE);
	printf("| send method | after return | received | bytes not 'A' |\n|---|---|---|---|\n");
	for (int method = 0; method < 3; method++) {
		for (int trunc = 0; trunc < 2; trunc++) {
			int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
			if (fd < 0 || pwrite(fd, a, SIZE, 0) != SIZE) die("write file");
			fsync(fd);
			int s, r;
			if (ns_send) veth_pair(&s, &r);
			else tcp_pair(&s, &r, 0);
			send_file(method, fd, s);
			/* The call has returned: change the file. */
			if (trunc) {
				if (ftruncate(fd, 1000)) die("ftruncate");
			} else if (pwrite(fd, b, SIZE, 0) != SIZE) die("overwrite");
			usleep(100000);
			shutdown(s, SHUT_WR);
			size_t n = 0;
			for (ssize_t k; (k = read(r, got + n, SIZE - n)) > 0;) n += k;
			size_t bad = 0, zeros = 0, bs = 0;
			for (size_t i = 0; i < n; i++) {
				bad += got[i] != 'A';
				zeros += got[i] == 0;
				bs += got[i] == 'B';
			}
			printf("| %s | %s | %zu | %zu (%zu 'B', %zu zero) |\n", names[method],
			       trunc ? "ftruncate(1000)" : "overwrite with 'B'", n, bad, bs, zeros);
			close(s); close(r); close(fd);
		}
	}
	unlink(path);
	return 0;
}
