package main

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/sendfile2/sendfile2/internal/httpconn"
)

// leanBody is what the lean path hands ReadFrom for a file's body.
type leanBody = httpconn.StatedFile

// body returns the reader of the whole of res's file for ReadFrom: with the
// stat that resolve made of it, so that the Sender makes no fstat(2) of its
// own. resolve's stat is of the file's inode, just now: a fresh file's
// fstat, or the stat of the name that a kept file matched (device, inode,
// ctime).
func (lc *leanConn) body(res resolved) io.Reader {
	st, ok := res.fi.Sys().(*syscall.Stat_t)
	if !ok {
		return &lc.sr
	}
	lc.lb = leanBody{SectionReader: lc.sr, File: res.f.File, Stat: unixStat(st)}
	return &lc.lb
}

// unixStat is st as x/sys/unix's type: the same fields, from the same
// kernel structure.
func unixStat(st *syscall.Stat_t) unix.Stat_t {
	return unix.Stat_t{
		Dev: st.Dev, Ino: st.Ino, Nlink: st.Nlink, Mode: st.Mode, Uid: st.Uid, Gid: st.Gid,
		Rdev: st.Rdev, Size: st.Size, Blksize: st.Blksize, Blocks: st.Blocks,
		Atim: unix.Timespec(st.Atim), Mtim: unix.Timespec(st.Mtim), Ctim: unix.Timespec(st.Ctim),
	}
}
