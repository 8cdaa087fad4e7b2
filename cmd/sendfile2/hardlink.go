package main

import (
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// linkGuard refuses a file that has another name than the one it was opened
// by, which may lie outside DIR: a hard link in DIR to a file outside it is
// that file, and no path check can tell.
//
// What it promises: a file it lets through had, at one moment after serve
// opened it, exactly one name (hard link), and that name was the one serve
// opened it by, under DIR. The checks, on the open descriptor N:
//
//  1. fstat(2): one link.
//  2. readlink(2) of /proc/self/fd/N: the kernel names an open file by its
//     dentry, and adds " (deleted)" once that dentry is unlinked (d_path and
//     d_unlinked, fs/d_path.c). A dentry unlinked while the file is open is
//     unhashed and never rehashed: a later link of the same file is a new
//     dentry. The name must be under DIR.
//  3. getdents(2) on that name's directory, which waits for the directory's
//     lock: unlink(2) drops the link count before it unhashes the dentry,
//     and holds the directory's lock across both (do_unlinkat, vfs_unlink in
//     fs/namei.c), so a count read in between is 1 while the name still
//     shows. Once the lock was ours, any unlink that had dropped the count
//     has unhashed the dentry too.
//  4. readlink(2) again: the same name, not deleted.
//
// A file opened by a name directly in DIR (no "/") takes a shorter way to
// the same promise: step 3 on a descriptor of DIR that the guard keeps open
// (getdents(2) at its end reads nothing, but takes the directory's lock all
// the same: iterate_dir in fs/readdir.c locks before it looks at the
// position), and step 4 alone, which must name the file DIR/name. Step 2
// served to find the directory to lock; the name checked in step 4 says it
// was the right one: an unlink of the file's dentry holds the lock of its
// directory from the drop of the count to the unhashing, and the dentry
// cannot move meanwhile (a rename needs that lock too), so a dentry still
// linked in DIR after the lock was taken was not being unlinked when fstat
// read the count. Any other answer (a name reached through a symbolic link,
// in another directory, deleted) takes the full check.
//
// A file whose name was removed after serve opened it (a rename over it
// replaced it, or it was deleted: an upload, an editor's save) is served
// if fstat then shows no link at all: it has no name left anywhere.
//
// So the dentry was still linked after the count was seen to be 1: it was
// the file's only name when the count was read. This closes the race of
// fstat alone: a local user who can write in DIR links a file from outside
// into DIR, lets serve open it, and unlinks the link before the fstat: the
// count is back to 1 (the name outside), and fstat alone served the outside
// file.
//
// What it does not promise: that the file was never elsewhere. A file moved
// (renamed) into DIR, or whose other names were all removed, has a single
// name in DIR and is served: whoever could do that could also have copied it
// there. A bind mount of a file over a name in DIR shows one link and the
// name in DIR (bind mounts need privilege). On NFS, unlinking an open file
// renames it (".nfsXXXX"), which is not reported as deleted. A name that
// really ends in " (deleted)" is refused unless the file has no link left,
// and a file renamed (not replaced) while it is requested is refused. Without
// /proc (or on other systems than Linux) only the fstat check runs, and the
// race stays open; serve says so at start. fs.protected_hardlinks=1 (the
// default of most distributions) already keeps an unprivileged user from
// linking a file that they neither own nor may read and write.
type linkGuard struct {
	root *os.Root
	proc bool // /proc/self/fd names open files

	mu  sync.Mutex
	dir string // the kernel's name of DIR, as /proc/self/fd shows it

	// DIR itself, kept open to take its lock (nil without /proc): its
	// offset stays at the end of the directory, where getdents(2) reads
	// no entry, or the few added since.
	top *os.File
}

// nlinkOnly makes new guards check the link count alone, the guard before
// the /proc checks: the tests' baseline, which the race defeats.
var nlinkOnly = false

// noDirLock makes the short way for names directly in DIR skip the lock of
// DIR: a baseline for the tests, which the race defeats.
var noDirLock = false

// newLinkGuard returns the guard, after checking that /proc/self/fd names
// root's directory.
func newLinkGuard(root *os.Root, log *slog.Logger) *linkGuard {
	g := &linkGuard{root: root}
	if nlinkOnly {
		return g
	}
	if _, err := g.rootPath(); err != nil {
		log.Warn("the hard-link guard checks the link count only: a local user who can write in DIR can race it", "err", err)
		return g
	}
	top, err := root.Open(".")
	if err == nil {
		err = lockDir(top, true)
	}
	if err != nil {
		if top != nil {
			top.Close()
		}
		log.Warn("the hard-link guard checks the link count only: a local user who can write in DIR can race it", "err", err)
		return g
	}
	g.proc, g.top = true, top
	return g
}

// close closes the guard's descriptor of DIR.
func (g *linkGuard) close() {
	if g != nil && g.top != nil {
		g.top.Close()
	}
}

// rootPath reads the kernel's name of DIR, which a rename of DIR changes.
func (g *linkGuard) rootPath() (string, error) {
	d, err := g.root.Open(".")
	if err != nil {
		return "", err
	}
	defer d.Close()
	p, err := fdPath(d)
	if err != nil {
		return "", err
	}
	g.mu.Lock()
	g.dir = p
	g.mu.Unlock()
	return p, nil
}

// check returns an error matching errHardLinked unless f, named name, has a
// single link that is still its name (see linkGuard). fi is f's fstat.
func (g *linkGuard) check(f *os.File, fi fs.FileInfo, name string) error {
	if links(fi) > 1 {
		return fmt.Errorf("%s: %w", name, errHardLinked)
	}
	if !g.proc {
		return nil
	}
	refuse := func(why string) error { return fmt.Errorf("%s: %s: %w", name, why, errHardLinked) }
	if g.top != nil && !strings.Contains(name, "/") {
		if noDirLock || lockDir(g.top, false) == nil {
			if p, err := fdPath(f); err == nil && !strings.HasSuffix(p, " (deleted)") && g.inTop(p, name) {
				return uploading(p, name)
			}
		}
		// Anything else: the full check, which tells why.
	}
	p, err := fdPath(f)
	if err != nil {
		return refuse(err.Error())
	}
	if strings.HasSuffix(p, " (deleted)") {
		return g.removed(f, refuse)
	}
	rel, ok := g.rel(p)
	if !ok {
		return refuse("its name left DIR after it was opened")
	}
	// Wait for the directory's lock, then look again.
	d, err := g.root.Open(path.Dir(rel))
	if err != nil {
		return refuse(err.Error())
	}
	_, err = d.Readdirnames(1)
	d.Close()
	if err != nil && err != io.EOF {
		return refuse(err.Error())
	}
	switch again, err := fdPath(f); {
	case err != nil:
		return refuse(err.Error())
	case strings.HasSuffix(again, " (deleted)"):
		return g.removed(f, refuse)
	case again != p:
		return refuse("it was renamed after it was opened")
	}
	return uploading(p, name)
}

// leadsToUpload reports whether name, a symbolic link to a regular file,
// leads to an upload's temporary file, which a GET of it refuses (check):
// a listing leaves it out, as it leaves out what else a GET would refuse.
func (h *fileHandler) leadsToUpload(name string) bool {
	if h.guard == nil || !h.guard.proc {
		return false // no check, and a GET serves it
	}
	f, err := h.root.Open(name)
	if err != nil {
		return false
	}
	defer f.Close()
	p, err := fdPath(f)
	return err == nil && uploading(p, name) != nil
}

// uploading returns an error matching errUploading if p, the path of the
// file opened for name, is an upload's temporary file.
func uploading(p, name string) error {
	if strings.HasPrefix(path.Base(p), tempPrefix) {
		return fmt.Errorf("%s: %w", name, errUploading)
	}
	return nil
}

// removed decides for f, whose name was removed after it was opened: a file
// replaced by a rename over its name, or deleted, while it was requested,
// has no name left (a link count of 0) and is served, as it was before;
// one that still has a name has it elsewhere, and is refused.
func (g *linkGuard) removed(f *os.File, refuse func(string) error) error {
	fi, err := f.Stat()
	if err != nil {
		return refuse(err.Error())
	}
	if links(fi) != 0 {
		return refuse("its name was removed after it was opened, and it has another")
	}
	return nil
}

// inTop reports whether p, which /proc/self/fd shows, is name directly in
// DIR.
func (g *linkGuard) inTop(p, name string) bool {
	g.mu.Lock()
	dir := g.dir
	g.mu.Unlock()
	rest, ok := strings.CutPrefix(p, strings.TrimSuffix(dir, "/"))
	return ok && rest == "/"+name
}

// rel returns the name p, which /proc/self/fd shows, relative to DIR.
func (g *linkGuard) rel(p string) (string, bool) {
	g.mu.Lock()
	dir := g.dir
	g.mu.Unlock()
	for range 2 {
		if rel, ok := strings.CutPrefix(p, strings.TrimSuffix(dir, "/")+"/"); ok && rel != "" {
			return rel, true
		}
		var err error
		if dir, err = g.rootPath(); err != nil { // DIR renamed?
			return "", false
		}
	}
	return "", false
}

// fdPath is readlink(2) of /proc/self/fd/N for f's descriptor N.
func fdPath(f *os.File) (string, error) {
	rc, err := f.SyscallConn()
	if err != nil {
		return "", err
	}
	var p string
	cerr := rc.Control(func(fd uintptr) {
		p, err = os.Readlink("/proc/self/fd/" + strconv.Itoa(int(fd)))
	})
	if cerr != nil {
		return "", cerr
	}
	return p, err
}

// links is the number of hard links of the file that fi describes.
func links(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}
