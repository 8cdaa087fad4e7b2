/* dontcache: RWF_DONTCACHE (Linux 6.14) on this machine's filesystems. Reads
 * a 64 MiB file that is not in the page cache with preadv2(2), without and
 * with RWF_DONTCACHE, and writes one with pwritev2(2), and counts the file's
 * pages left in the page cache (mincore(2) of a mapping). Also tries tmpfs.
 *
 *   gcc -O2 -o /tmp/dontcache dontcache.c && /tmp/dontcache [DIR] [TMPFS_DIR]
 */
#include "common.h"
#include <sys/uio.h>

#ifndef RWF_DONTCACHE
#define RWF_DONTCACHE 0x00000080
#endif
#define SIZE (64UL << 20)

static size_t resident(int fd)
{
	static unsigned char vec[SIZE / 4096];
	void *m = mmap(0, SIZE, PROT_READ, MAP_SHARED, fd, 0);
	if (m == MAP_FAILED || mincore(m, SIZE, vec)) die("mincore");
	size_t n = 0;
	for (size_t i = 0; i < SIZE / 4096; i++) n += vec[i] & 1;
	munmap(m, SIZE);
	return n * 4096;
}

static void one(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/dontcache-probe.dat", dir);
	static char buf[1 << 20];
	memset(buf, 'x', sizeof(buf));
	for (int flags = 0; flags < 2; flags++) {
		int rwf = flags ? RWF_DONTCACHE : 0;
		const char *name = flags ? "RWF_DONTCACHE" : "no flag";
		int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
		if (fd < 0) die("open");
		struct iovec iov = { buf, sizeof(buf) };
		ssize_t w = 0;
		for (size_t o = 0; o < SIZE && w >= 0; o += sizeof(buf))
			w = pwritev2(fd, &iov, 1, o, rwf);
		if (w < 0) {
			printf("%s: pwritev2 with %s: %s\n", dir, name, strerror(errno));
			close(fd);
			continue;
		}
		fsync(fd);
		size_t after_write = resident(fd);
		posix_fadvise(fd, 0, SIZE, POSIX_FADV_DONTNEED);
		size_t before = resident(fd);
		for (size_t o = 0; o < SIZE; o += sizeof(buf))
			if (preadv2(fd, &iov, 1, o, rwf) < 0) { printf("%s: preadv2 with %s: %s\n", dir, name, strerror(errno)); break; }
		printf("%s: 64 MiB, %s: page cache after pwritev2+fsync %zu MiB; read back from %zu MiB cached: %zu MiB cached after preadv2\n",
		       dir, name, after_write >> 20, before >> 20, resident(fd) >> 20);
		close(fd);
	}
	unlink(path);
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	one(argc > 1 ? argv[1] : ".");
	if (argc > 2) one(argv[2]);
	return 0;
}
