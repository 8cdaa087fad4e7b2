package main

import (
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"strings"
	"time"
)

// Bounds of the walk that looks for stale uploads: DIR may be a large tree.
const (
	staleMaxEntries = 1_000_000
	staleMaxDepth   = 64
)

var errWalkBound = errors.New("bound reached")

// removeStaleUploads removes the temporary files of uploads that a serve
// killed before it could remove them (SIGKILL, a crash) left in DIR: the
// regular files named tempPrefix and 16 hex digits, last modified before
// start. It walks DIR through root, never through a symbolic link, at most
// staleMaxDepth directories deep and staleMaxEntries entries, and logs what
// it removed. Two serve --upload on the same DIR would remove each other's
// uploads of before their start: run one.
func removeStaleUploads(root *os.Root, start time.Time, log *slog.Logger) {
	removed, entries := 0, 0
	err := fs.WalkDir(root.FS(), ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil // unreadable: skip it
		}
		if entries++; entries > staleMaxEntries {
			return errWalkBound
		}
		if d.IsDir() {
			if strings.Count(name, "/") >= staleMaxDepth {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !isTempName(path.Base(name)) {
			return nil
		}
		fi, err := root.Lstat(name)
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(start) {
			return nil
		}
		if err := root.Remove(name); err != nil {
			log.Warn("removing a stale upload", "file", name, "err", err)
			return nil
		}
		removed++
		return nil
	})
	switch {
	case errors.Is(err, errWalkBound):
		log.Warn("stale uploads: stopped looking", "entries", staleMaxEntries, "removed", removed)
	case err != nil:
		log.Warn("stale uploads", "err", err, "removed", removed)
	case removed > 0:
		log.Info("removed stale uploads", "files", removed)
	}
}

// isTempName reports whether name is one that prepare gives temporary files.
func isTempName(name string) bool {
	hex, ok := strings.CutPrefix(name, tempPrefix)
	return ok && len(hex) == 16 && strings.Trim(hex, "0123456789abcdef") == ""
}
