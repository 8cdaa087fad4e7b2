/* ctime.c: whether a change to a file always moves its ctime, which serve's
 * open-file cache relies on (docs/KERNEL-FACTS.md, section 10).
 *
 * For each DIR given (default: the current directory), on two files a and b:
 *   two files: fchmod a, then fchmod b, then read both ctimes. Equal ctimes
 *     mean that the two changes got one timestamp: the clock that stamps
 *     changes is coarse (a tick of a few ms).
 *   one file: fstat a, fchmod a, fstat a. Equal ctimes mean a change made
 *     after the ctime was read left it as read: what the cache would miss.
 *
 *   gcc -O2 -o /tmp/ctime ctime.c && /tmp/ctime [DIR...]
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#define die(msg) do { perror(msg); exit(1); } while (0)
#define ROUNDS 20000

static int same(const struct stat *x, const struct stat *y)
{
	return x->st_ctim.tv_sec == y->st_ctim.tv_sec && x->st_ctim.tv_nsec == y->st_ctim.tv_nsec;
}

static int make(const char *dir, const char *name)
{
	char p[4096];
	snprintf(p, sizeof p, "%s/%s", dir, name);
	int fd = open(p, O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		die(p);
	unlink(p);
	return fd;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? argc - 1 : 1;
	for (int d = 0; d < n; d++) {
		const char *dir = argc > 1 ? argv[d + 1] : ".";
		int a = make(dir, "ctime-a"), b = make(dir, "ctime-b");
		struct statfs sf;
		if (fstatfs(a, &sf))
			die("fstatfs");
		int two = 0, one = 0;
		for (int i = 0; i < ROUNDS; i++) {
			struct stat x, y;
			mode_t m = i % 2 ? 0644 : 0600;
			if (fchmod(a, m) || fchmod(b, m))
				die("fchmod");
			if (fstat(a, &x) || fstat(b, &y))
				die("fstat");
			two += same(&x, &y);
			if (fchmod(a, m ^ 0040))
				die("fchmod");
			if (fstat(a, &y))
				die("fstat");
			one += same(&x, &y);
		}
		printf("%s (filesystem magic %#lx): two files changed in turn, one ctime: %d of %d; "
		       "one file changed after its ctime was read, the ctime as read: %d of %d\n",
		       dir, (unsigned long)sf.f_type, two, ROUNDS, one, ROUNDS);
		close(a);
		close(b);
	}
	return 0;
}
