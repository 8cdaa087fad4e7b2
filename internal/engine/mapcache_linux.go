package engine

import (
	"container/list"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// fileMaps keeps the read-only shared mappings of files that Copy,
// URingMmap and MsgZC send from, so that a file sent again and again (the hot files of a file server)
// is mapped once rather than at every send: a send from a kept mapping makes
// no mmap(2), no munmap(2) and no page faults, and copies the file's bytes
// once, inside send(2), where a pread(2) buffer copies them twice. Go code
// never reads a mapping; the kernel does, inside send(2), so a page past the
// end of a file that shrank gives EFAULT there, never SIGBUS.
//
// A mapping is a window of copyWindow bytes of one version of one file: the
// key is the file's device and inode and the window's index, the version its
// size and ctime, from the fstat(2) of the send. A file written, truncated or
// extended has a new ctime, so its next send maps it again; the mapping of
// the old version goes when no send uses it. (A shared mapping shows the
// file's current bytes anyway; the version makes an inode number reused for
// another file, as NFS may, never find the old file's mapping.)
//
// A send holds a reference to each mapping it uses until the kernel holds
// none of the addresses or pages it took from it: for Copy until its
// send(2) returns, for the zero-copy engines until the notification of
// every request or call that sent from it (they let a window go only with
// nothing of their own in flight, and return only then). A mapping that is
// dropped (a new version of its file, the least recently used, the idle
// sweep, Close) is unmapped by the release of the last send that used it.
//
// A mapping holds a reference to its file, which keeps a removed file's
// blocks allocated. Mappings that no send has used for idle are unmapped,
// and at most maxMapped windows of maxMappedBytes in all are kept: the least
// recently used idle one makes room. Close unmaps them all.
type fileMaps struct {
	mu     sync.Mutex
	m      map[mapKey]*fileMap
	lru    list.List   // of the *fileMap in m, the most recently used first
	bytes  int64       // the length of all mappings in m
	sweep  *time.Timer // runs sweepIdle while m is not empty; nil otherwise
	closed bool
	idle   time.Duration // how long a kept mapping may go unused (Tuning.MapIdle)

	mapped, hits int64 // mappings made, and sends that found one
}

const (
	maxMapped      = 1024
	maxMappedBytes = 1 << 30
)

type mapKey struct {
	dev, ino uint64
	window   int64 // offset / copyWindow
}

type mapVersion struct {
	size  int64
	ctime unix.Timespec
}

// fileMap is a mapping of [key.window*copyWindow, +len(mem)) of one version of
// a file, or, with mem nil, the note that a send of it went without one.
type fileMap struct {
	key     mapKey
	version mapVersion
	mem     []byte // nil until the window's second send
	// unmappable: mmap(2) failed for this version, which is read instead.
	unmappable bool
	refs       int           // sends using it, under fileMaps.mu
	used       time.Time     // when the last send took it
	elem       *list.Element // in fileMaps.lru
	gone       bool          // out of fileMaps.m: unmapped by the last release
}

// acquire returns the kept mapping of the window of the file fd (whose
// fstat(2) is st) that holds offset pos, for one send; release gives it back.
// Without first, a window is mapped at its second send within idle, not at
// its first: a file sent once, as most files of a large cold set are, would
// pay mmap(2) and munmap(2) for one send, which costs more than the pread(2)
// copy it saves (BenchmarkCopyVariants). A send that maps the file anyway
// (the zero-copy engines) sets first: the mapping it makes is kept. acquire
// returns nil for a first send without first, and when the file cannot
// share a kept mapping: its descriptor is not open for reading (a mapping
// made through another descriptor must not read it for one that may not),
// mmap(2) refused it, or the Sender is closed. The caller then reads or maps
// for itself. *readable says fd is known open for reading; acquire asks
// fcntl(2) otherwise, and sets it when fd is.
func (c *fileMaps) acquire(fd int, st *unix.Stat_t, pos int64, first bool, readable *bool) *fileMap {
	if !*readable {
		fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
		if err != nil || fl&unix.O_PATH != 0 || fl&unix.O_ACCMODE == unix.O_WRONLY {
			return nil
		}
		*readable = true
	}
	key := mapKey{dev: st.Dev, ino: st.Ino, window: pos / copyWindow}
	version := mapVersion{size: st.Size, ctime: st.Ctim}
	now := time.Now()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	fm := c.m[key]
	if fm != nil && fm.version == version {
		c.touch(fm, now)
		switch {
		case fm.mem != nil:
			fm.refs++
			c.hits++
			c.mu.Unlock()
			return fm
		case fm.unmappable:
			c.mu.Unlock()
			return nil
		}
	} else {
		// First send of this version: note it, map at the next (or now).
		if fm != nil {
			c.drop(fm) // an older version of the file
		}
		c.insert(&fileMap{key: key, version: version, used: now})
		if !first {
			c.mu.Unlock()
			return nil
		}
	}
	c.mu.Unlock()
	base := key.window * copyWindow
	mem, err := mapFile(fd, base, int(min(st.Size-base, copyWindow)))
	if err != nil {
		// A file system without mmap, for one: the caller reads with
		// pread(2) (or tries its own mapping, and reports the error), and
		// the next sends of this version do not try again.
		c.mu.Lock()
		if fm := c.m[key]; fm != nil && fm.version == version {
			fm.unmappable = true
		}
		c.mu.Unlock()
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	fm = c.m[key]
	switch {
	case c.closed:
		// Unmapped at its release.
		return &fileMap{key: key, version: version, mem: mem, refs: 1, gone: true}
	case fm != nil && fm.version == version && fm.mem != nil:
		// Another send mapped it while we did: share that mapping.
		munmap(mem)
	case fm != nil && fm.version == version:
		c.bytes += int64(len(mem))
		fm.mem = mem
		c.mapped++
	case fm != nil:
		// A newer version took its place: ours serves this send only.
		return &fileMap{key: key, version: version, mem: mem, refs: 1, gone: true}
	default:
		// Swept while we mapped it: keep it again.
		fm = &fileMap{key: key, version: version, mem: mem}
		c.insert(fm)
		c.mapped++
	}
	fm.refs++
	c.touch(fm, now)
	for c.bytes > maxMappedBytes && c.dropOldestIdle(true) {
	}
	return fm
}

// touch records a send's use of fm. The caller holds mu.
func (c *fileMaps) touch(fm *fileMap, now time.Time) {
	fm.used = now
	c.lru.MoveToFront(fm.elem)
}

// insert adds fm to the map, making room if the map is full. The caller
// holds mu.
func (c *fileMaps) insert(fm *fileMap) {
	for len(c.m) >= maxMapped && c.dropOldestIdle(false) {
	}
	if c.m == nil {
		c.m = map[mapKey]*fileMap{}
	}
	c.m[fm.key] = fm
	fm.elem = c.lru.PushFront(fm)
	c.bytes += int64(len(fm.mem))
	if c.sweep == nil {
		c.sweep = time.AfterFunc(c.idle, c.sweepIdle)
	}
}

// release ends a send's use of fm.
func (c *fileMaps) release(fm *fileMap) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fm.refs--
	if fm.refs == 0 && fm.gone && fm.mem != nil {
		munmap(fm.mem)
	}
}

// drop takes fm out of the map; it is unmapped now if no send uses it, else
// by the last release. The caller holds mu.
func (c *fileMaps) drop(fm *fileMap) {
	delete(c.m, fm.key)
	c.lru.Remove(fm.elem)
	c.bytes -= int64(len(fm.mem))
	fm.gone = true
	if fm.refs == 0 && fm.mem != nil {
		munmap(fm.mem)
	}
}

// dropOldestIdle drops the least recently used entry that no send uses (a
// mapping, if mapped is set), and reports whether there was one. The caller
// holds mu.
func (c *fileMaps) dropOldestIdle(mapped bool) bool {
	for e := c.lru.Back(); e != nil; e = e.Prev() {
		if fm := e.Value.(*fileMap); fm.refs == 0 && (fm.mem != nil || !mapped) {
			c.drop(fm)
			return true
		}
	}
	return false
}

// sweepIdle unmaps the mappings unused for idle, and runs again while
// any are left.
func (c *fileMaps) sweepIdle() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweep = nil
	if c.closed {
		return
	}
	now := time.Now()
	for e := c.lru.Back(); e != nil; {
		fm := e.Value.(*fileMap)
		if now.Sub(fm.used) < c.idle {
			break // and so are all before it
		}
		e = e.Prev()
		if fm.refs == 0 {
			c.drop(fm)
		}
	}
	if len(c.m) > 0 {
		c.sweep = time.AfterFunc(c.idle, c.sweepIdle)
	}
}

// close unmaps every mapping (those in use by their last release) and keeps
// new ones from being kept.
func (c *fileMaps) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	if c.sweep != nil {
		c.sweep.Stop()
		c.sweep = nil
	}
	for _, fm := range c.m {
		c.drop(fm)
	}
}

// window is the mapping a send takes a window of its file from: a kept
// mapping, or, where there is none, a mapping of the send's own.
type window struct {
	fm   *fileMap // the kept mapping, or nil
	mem  []byte   // the window, up to the end of the range
	base int64    // the file offset of mem[0]
}

// holds reports whether the window holds file offset pos.
func (w *window) holds(pos int64) bool {
	return w.mem != nil && pos >= w.base && pos < w.base+int64(len(w.mem))
}

// window returns the window of the file fd that holds pos, up to end (the
// end of the send's range, within st.Size): the kept mapping, mapped now if
// it is not yet (acquire with first and readable), or else a mapping of its own of up to
// copyWindow bytes. put gives it back.
func (c *fileMaps) window(fd int, st *unix.Stat_t, pos, end int64, readable *bool) (window, error) {
	if fm := c.acquire(fd, st, pos, true, readable); fm != nil {
		base := fm.key.window * copyWindow
		return window{fm: fm, mem: fm.mem[:min(int64(len(fm.mem)), end-base)], base: base}, nil
	}
	base := pos &^ int64(os.Getpagesize()-1)
	mem, err := mapFile(fd, base, int(min(end-base, copyWindow)))
	if err != nil {
		return window{}, os.NewSyscallError("mmap", err)
	}
	return window{mem: mem, base: base}, nil
}

// put gives w back: the kept mapping to the Sender, the send's own unmapped.
// The kernel must hold nothing that the send took from it.
func (c *fileMaps) put(w *window) {
	switch {
	case w.fm != nil:
		c.release(w.fm)
	case w.mem != nil:
		munmap(w.mem)
	}
	*w = window{}
}
