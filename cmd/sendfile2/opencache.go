package main

import (
	"container/list"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// openFile is a regular file or directory that fileHandler.open returns, for
// its caller to Close: a descriptor of its own, or one that the file cache
// shares, which Close gives back. Read it through File (a *os.File, which
// the Sender recognises as a file).
type openFile struct {
	*os.File
	c *fileCache // nil: File is this caller's alone

	// Of a cached file, under c.mu:
	name string
	id   fileID
	refs int           // callers holding it, plus one while cached
	used time.Time     // when it was last taken
	elem *list.Element // in c.lru; nil once out of the cache
}

// Close closes the file, or gives a shared one back to the cache, which
// closes it once it has left the cache and its last caller gave it back.
func (f *openFile) Close() error {
	if f.c == nil {
		return f.File.Close()
	}
	f.c.release(f)
	return nil
}

// fileCache keeps open the regular files that fileHandler.open proved (in
// the root, regular, and with one hard link as the guard checks it), by the
// name they were opened by, so that the next request for that name proves
// it again with the stat(2) that open makes first anyway, instead of
// open(2), fstat(2) and the guard's readlink(2) and directory lock: six
// of the eleven system calls of a request for a small file directly in DIR
// (docs/RELIABILITY.md).
//
// A cached file is taken for a name only while stat(2) of the name in the
// root shows the very file (device and inode number), a regular file with
// one hard link (unless hard links are allowed), and with the
// status-change time (ctime), mode and owner it had when it was proved. A
// link, unlink or rename of the file, a change of its owner or mode, and a
// write to it all set its ctime (POSIX; Linux 6.13 and later make each such
// change visible on ext4, XFS, btrfs and tmpfs even within a clock tick
// once the ctime has been read, as the proof read it, but not within the
// second of a filesystem that keeps whole seconds; docs/RELIABILITY.md
// says what that leaves): after any of them the name is opened and proved
// again, as if nothing were cached.
// So the file served for a name is always the one the name leads to now;
// its size and times come from that stat, and the guard's promise holds as
// it did for the open that the file was proved by. The descriptor held
// open meanwhile keeps the file from being freed, so its inode number
// cannot be reused by another file.
//
// Bounds: at most max files, the least recently taken closed first, and
// none kept longer than idle after it was last taken, so that a file
// deleted or replaced in DIR keeps its blocks only that long. A file that a
// response still reads when it leaves the cache is closed when the last
// such response ends: one descriptor per response, as without the cache.
type fileCache struct {
	max  int
	idle time.Duration

	hits, misses atomic.Uint64

	mu     sync.Mutex
	files  map[string]*openFile
	lru    list.List // of *openFile, most recently taken first
	timer  *time.Timer
	closed bool
}

// fileID is what tells a cached file from what its name may lead to later:
// the file (device and inode number) and its status-change time; and its
// mode and owner, which the stat shows anyway, so that a chmod or chown
// that left the ctime as it was (within a tick, or a second; see
// fileCache) is seen all the same.
type fileID struct {
	dev, ino uint64
	ctime    int64 // ns since the epoch
	mode     uint32
	uid, gid uint32
}

// defaultOpenFiles is --open-files: the files a small site serves most, at
// a descriptor each (fitConns counts them).
const defaultOpenFiles = 256

// fileCacheIdle is how long a cached file is kept after it was last taken.
const fileCacheIdle = 10 * time.Second

// newFileCache returns a cache of at most max files (nil for 0: nothing is
// cached).
func newFileCache(max int, idle time.Duration) *fileCache {
	if max <= 0 {
		return nil
	}
	return &fileCache{max: max, idle: idle, files: make(map[string]*openFile)}
}

// get returns the cached file for name, taken, when fi (stat(2) of name in
// the root, just made) shows that it is still that file; or nil.
func (c *fileCache) get(name string, fi fs.FileInfo, allowHardlinks bool) *openFile {
	if c == nil {
		return nil
	}
	id, ok := fileIDOf(fi)
	c.mu.Lock()
	defer c.mu.Unlock()
	f := c.files[name]
	if f == nil {
		c.misses.Add(1)
		return nil
	}
	if !ok || !fi.Mode().IsRegular() || id != f.id || links(fi) != 1 && !allowHardlinks {
		c.drop(f) // what the name leads to has changed: prove it again
		c.misses.Add(1)
		return nil
	}
	c.hits.Add(1)
	f.refs++
	f.used = time.Now()
	c.lru.MoveToFront(f.elem)
	return f
}

// put caches file, proved for name, whose fstat(2) is fi, and returns it
// taken by the caller; or it returns file as it is (not cached) when fi
// does not say what get compares, or the cache is closed.
func (c *fileCache) put(name string, file *os.File, fi fs.FileInfo) *openFile {
	id, ok := fileIDOf(fi)
	if c == nil || !ok || !fi.Mode().IsRegular() {
		return &openFile{File: file}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return &openFile{File: file}
	}
	if old := c.files[name]; old != nil {
		c.drop(old)
	}
	for c.lru.Len() >= c.max {
		c.drop(c.lru.Back().Value.(*openFile))
	}
	f := &openFile{File: file, c: c, name: name, id: id, refs: 2, used: time.Now()}
	f.elem = c.lru.PushFront(f)
	c.files[name] = f
	if c.timer == nil {
		c.timer = time.AfterFunc(c.idle, c.sweep)
	}
	return f
}

// forget drops the file cached for name, if any: the name leads nowhere.
func (c *fileCache) forget(name string) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.files[name]; f != nil {
		c.drop(f)
	}
}

// release gives f back: the last caller of a file out of the cache closes it.
func (c *fileCache) release(f *openFile) {
	c.mu.Lock()
	f.refs--
	last := f.refs == 0
	c.mu.Unlock()
	if last {
		f.File.Close()
	}
}

// drop takes f out of the cache, and closes it unless a caller still
// holds it. c.mu is held.
func (c *fileCache) drop(f *openFile) {
	c.lru.Remove(f.elem)
	f.elem = nil
	delete(c.files, f.name)
	if f.refs--; f.refs == 0 {
		f.File.Close()
	}
}

// sweep closes the files not taken for c.idle, and arms the timer again
// while files are left.
func (c *fileCache) sweep() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.timer = nil
	if c.closed {
		return
	}
	c.expire(time.Now())
	if e := c.lru.Back(); e != nil {
		c.timer = time.AfterFunc(c.idle-time.Since(e.Value.(*openFile).used), c.sweep)
	}
}

// expire drops the files last taken c.idle or longer before now. c.mu is
// held.
func (c *fileCache) expire(now time.Time) {
	for e := c.lru.Back(); e != nil; e = c.lru.Back() {
		f := e.Value.(*openFile)
		if now.Sub(f.used) < c.idle {
			return
		}
		c.drop(f)
	}
}

// close drops every file, and caches none from now on: a file still read
// by a response is closed when that response gives it back.
func (c *fileCache) close() {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	for e := c.lru.Back(); e != nil; e = c.lru.Back() {
		c.drop(e.Value.(*openFile))
	}
}

// len returns the number of files cached.
func (c *fileCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
